"""The cluster port: the small interface every suite, fixture and check speaks, whatever the cluster."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from ..errors import ClusterError, NotFoundError, WaitTimeout
from ..kube import Obj, selector_matches

T = TypeVar("T")


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a command run in a container."""

    command: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> ExecResult:
        if self.returncode != 0:
            detail = (self.stderr or self.stdout).strip().splitlines()
            raise ClusterError(f"{' '.join(self.command)} exited {self.returncode}: "
                               f"{detail[-1] if detail else 'no output'}")
        return self


def wait_for(what: str, probe: Callable[[], tuple[T | None, str]], timeout: float, interval: float = 0.2) -> T:
    """Poll ``probe`` until it returns a value; it returns (value or None, what it saw this time).

    Exceptions from the probe end the wait at once: they mean waiting longer cannot help."""
    seen = ["nothing yet"]

    def attempt() -> T | None:
        value, seen[0] = probe()
        return value

    retrying = tenacity.Retrying(stop=tenacity.stop_after_delay(timeout), wait=tenacity.wait_fixed(interval),
                                 retry=tenacity.retry_if_result(lambda value: value is None),
                                 retry_error_callback=lambda state: None)
    value = retrying(attempt)
    if value is None:
        raise WaitTimeout(what, timeout, seen[0])
    return value


def wait_consistent(what: str, observe: Callable[[], T], expected: Callable[[T], bool], timeout: float,
                    needed: int = 3, interval: float = 0.1) -> T:
    """Convergence where proxies publish no config version: ``needed`` consecutive observations that show
    the expected behaviour, within ``timeout`` (the Gateway API conformance suite's rule, bounded)."""
    streak = 0

    def probe() -> tuple[T | None, str]:
        nonlocal streak
        value = observe()
        streak = streak + 1 if expected(value) else 0
        return (value, "") if streak >= needed else (None, f"{streak}/{needed} consistent; last {value!r}")

    return wait_for(what, probe, timeout, interval)


def pod_is_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


# A pod in one of these states will not become ready by waiting; CrashLoopBackOff only after a few
# restarts, since control-plane pods often crash while the services they need are still starting.
HOPELESS_WAITING_REASONS = frozenset({"ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                                      "CreateContainerConfigError"})
CRASH_LOOP_RESTARTS = 3


def hopeless_reason(pod: Obj) -> str | None:
    """Why a pod will not become ready by waiting, or None while it still may."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Failed", "Succeeded"):  # every container ended and none restarts
        ended = [f"{c['name']} exited {c['state']['terminated'].get('exitCode')}"
                 f" ({c['state']['terminated'].get('reason', '')})"
                 for c in status.get("containerStatuses") or [] if "terminated" in (c.get("state") or {})]
        detail = ": " + "; ".join(ended) if ended else (f": {status['message']}" if status.get("message") else "")
        return f"pod {pod['metadata']['name']} has {status['phase']}{detail}"
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in HOPELESS_WAITING_REASONS or (
                reason == "CrashLoopBackOff" and container.get("restartCount", 0) >= CRASH_LOOP_RESTARTS):
            message = waiting.get("message") or f"restarted {container.get('restartCount', 0)} times"
            return f"container {container['name']} of pod {pod['metadata']['name']} is in {reason}: {message}"
    return None


def describe_pod(pod: Obj) -> str:
    status = pod.get("status") or {}
    waiting = [f"{c['name']}: {c['state']['waiting'].get('reason')}"
               + (f" ({c['state']['waiting']['message']})" if c["state"]["waiting"].get("message") else "")
               for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
               if "waiting" in (c.get("state") or {})]
    detail = "; ".join(waiting)
    return f"{pod['metadata']['name']} {status.get('phase', 'Pending')}" + (f" [{detail}]" if detail else "")


class Cluster(abc.ABC):
    """What a suite may ask of a cluster. Adapters implement the abstract methods; waits live here."""

    name: str

    @abc.abstractmethod
    def list_pods(self, namespace: str | None = None) -> list[Obj]:
        """Pods as Kubernetes dicts; all namespaces when ``namespace`` is None."""

    @abc.abstractmethod
    def list_objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Objects of one kind (RouteRule, Deployment, …), in a namespace or (None) in all of them."""

    @abc.abstractmethod
    def get(self, kind: str, name: str, namespace: str = "default") -> Obj | None:
        """One object, or None when it does not exist."""

    @abc.abstractmethod
    def exec(self, namespace: str, pod: str, command: Sequence[str], container: str | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run a command in a container (the pod's first container when none is named)."""

    @abc.abstractmethod
    def apply(self, objects: list[Obj]) -> list[Obj]:
        """Create or update objects; returns one result per object. Refusals raise ClusterError."""

    @abc.abstractmethod
    def delete(self, objects: list[Obj]) -> list[Obj]:
        """Delete objects; absent ones are reported, not an error."""

    @abc.abstractmethod
    def service_url(self, namespace: str, service: str, port: int) -> str:
        """An http URL for a service port, reachable from the test process."""

    @abc.abstractmethod
    def ingress_url(self) -> str:
        """The http URL of the mesh ingress, reachable from the test process."""

    @abc.abstractmethod
    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
        """A container's log (or its previous instance's)."""

    @abc.abstractmethod
    def events(self, namespace: str | None = None) -> list[Obj]:
        """Kubernetes Events, oldest first."""

    @abc.abstractmethod
    def wait_converged(self, timeout: float) -> None:
        """Return once every proxy runs the mesh's current configuration (routes, endpoints)."""

    @abc.abstractmethod
    def pod_iptables(self, namespace: str, pod: str) -> str:
        """``iptables-save`` of the pod's network namespace, read with the privileges that takes
        (the pod's own containers may lack them: the proxy runs as an unprivileged uid)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the adapter holds in the test process or the cluster (proxies, helper pods)."""

    def service_with_port(self, namespace: str, service: str, port: int) -> Obj:
        """The Service, refusing (NotFoundError) one that is missing or lacks the port."""
        svc = self.get("Service", service, namespace)
        if svc is None:
            raise NotFoundError(f'service "{service}" not found in namespace "{namespace}"')
        ports = [p["port"] for p in svc["spec"].get("ports") or []]
        if port not in ports:
            raise NotFoundError(f"service {service} has no port {port}; its ports: {ports}")
        return svc

    # -- waits, shared by every adapter -------------------------------------------------------------
    def pods(self, namespace: str | None = None, selector: dict[str, str] | None = None) -> list[Obj]:
        pods = self.list_pods(namespace)
        if selector:
            pods = [p for p in pods if selector_matches(selector, p["metadata"].get("labels") or {})]
        return pods

    def wait_pods_ready(self, namespace: str | None, timeout: float, selector: dict[str, str] | None = None,
                        minimum: int = 1) -> list[Obj]:
        """Wait until at least ``minimum`` pods match and every matching pod is Ready."""

        def probe() -> tuple[list[Obj] | None, str]:
            pods = [p for p in self.pods(namespace, selector) if not p["metadata"].get("deletionTimestamp")]
            not_ready = [p for p in pods if not pod_is_ready(p)]
            for pod in not_ready:
                reason = hopeless_reason(pod)
                if reason:
                    raise ClusterError(reason)
            if len(pods) >= minimum and not not_ready:
                return pods, ""
            return None, "; ".join(describe_pod(p) for p in not_ready) or f"{len(pods)} pods"

        where = f"namespace {namespace}" if namespace else "all namespaces"
        return wait_for(f"pods ready in {where}", probe, timeout)

    def wait_pods_gone(self, namespace: str | None, timeout: float, selector: dict[str, str] | None = None) -> None:
        def probe() -> tuple[bool | None, str]:
            left = self.pods(namespace, selector)
            return (True, "") if not left else (None, ", ".join(p["metadata"]["name"] for p in left))

        wait_for("pods to be deleted", probe, timeout)
