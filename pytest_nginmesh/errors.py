"""The error hierarchy: one base class, specific subclasses, messages that name the fix."""

from __future__ import annotations


class NginmeshError(Exception):
    """Base of every error this package raises on purpose."""


class UsageError(NginmeshError):
    """Bad input from the user: an option, a file, a name. The message says how to fix it."""


class PreflightError(NginmeshError):
    """The machine cannot host the requested cluster (not root, a tool missing, a range clash)."""


class ManifestError(UsageError):
    """A manifest does not parse or is not a Kubernetes object."""


class ClusterError(NginmeshError):
    """The cluster refused a request or failed to carry it out."""

    def __init__(self, message: str, status: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status or {}


class NotFoundError(ClusterError):
    """The object, pod, container or cluster asked for does not exist."""


class ForbiddenError(ClusterError):
    """The caller may not make this request (e.g. a config ack from outside the pod it concerns)."""


class WaitTimeout(NginmeshError):
    """A bounded wait ran out; the message says what was awaited and what was last seen."""

    def __init__(self, awaited: str, seconds: float, last_seen: str) -> None:
        super().__init__(f"timed out after {seconds:g}s waiting for {awaited}; last seen: {last_seen}")
        self.awaited = awaited
        self.seconds = seconds
        self.last_seen = last_seen
