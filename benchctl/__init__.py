"""benchctl: benchmark LLM inference engines on GPUs provisioned as code with Pulumi."""

__version__ = "0.1.0"
