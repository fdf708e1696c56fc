"""One small hierarchy of errors. The CLI turns them into messages and exit codes; nothing else does."""

from __future__ import annotations


class BenchctlError(Exception):
    """Base class. `exit_code` is what the CLI exits with: 1 = the operation failed, 2 = bad input."""

    exit_code = 1


class ConfigError(BenchctlError):
    """The configuration (file, flags or environment) is wrong. Nothing was created."""

    exit_code = 2


class UsageError(BenchctlError):
    """A command was called in a way that cannot work (missing flag, conflicting options)."""

    exit_code = 2


class NotAvailableError(BenchctlError):
    """The capability exists in the CLI but is not usable here (missing extra, missing tool)."""


class ProvisionError(BenchctlError):
    """Creating, updating or destroying the stack failed."""


class StackLockedError(ProvisionError):
    """Another update holds the stack's lock."""


class RemoteError(BenchctlError):
    """SSH, file transfer or a remote command failed."""


class BenchmarkError(BenchctlError):
    """The load test itself failed (server unreachable, error threshold passed, client-bound with --strict)."""
