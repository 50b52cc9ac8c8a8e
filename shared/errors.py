"""The lensflow exception tree.

Every error a lensflow component raises on purpose derives from :class:`LensflowError`, so a
long-running process can catch the family at its boundary, log it with context and carry on.
Errors raised by third-party libraries are translated once, where they cross into lensflow,
with ``raise ... from err``.
"""

from __future__ import annotations

from dataclasses import dataclass


class LensflowError(Exception):
    """Base class of every error lensflow raises on purpose."""


@dataclass(frozen=True)
class SourceLocation:
    """Where in a config file something was found (1-based line and column)."""

    path: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a config file: where it is and what is wrong."""

    message: str
    location: SourceLocation | None = None
    field: str = ""

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"


class ConfigError(LensflowError):
    """A config file (or config text) is invalid; carries every issue found, not only the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        if not issues:
            raise ValueError("ConfigError needs at least one issue")
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class ConditionError(LensflowError):
    """A ``when`` condition is not in the allowed condition language."""


class PluginError(LensflowError):
    """A classifier plugin could not be resolved, or broke its contract."""


class PluginUnavailableError(PluginError):
    """A plugin exists but cannot run here (a missing optional dependency or model file)."""


class ProtocolError(LensflowError):
    """Bytes on the wire are not a valid lensflow message (bad framing, version or fields)."""


class ImageError(LensflowError):
    """Bytes or a file that should hold an image cannot be decoded as one."""


class ModelError(LensflowError):
    """A model file is missing, corrupt, of the wrong kind, or fails its hash check."""


class DetectorError(LensflowError):
    """A detector runtime failed while running a model."""


class ServiceUnavailableError(LensflowError):
    """A service a node needs (an inference server) cannot be reached or is not ready.

    The input is not at fault: the DAG does not record it as the node's error; the worker holds
    the batch's acks and retries it once the service is back, as for a database outage.
    """
