"""The load generator: an OpenAI-compatible streaming client, arrival patterns and metrics.

Standard library only (Python >= 3.10), and nothing from `benchctl` outside this package: it is shipped
as a zipapp to a bare launcher and run with the system python3 (`python -m benchctl.load.runner`).
"""
