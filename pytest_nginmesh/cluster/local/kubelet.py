"""A small kubelet: runs each pod spec as processes in the pod's namespace and writes Kubernetes status."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...kube import Obj, ObjectKey, key_of
from . import catalogue
from .network import Allocator, NodeNetwork, pod_link, pod_netns
from .store import Store, now

log = logging.getLogger(__name__)

PRIVILEGED_CAPS = ("net_admin", "net_raw", "net_bind_service")
MAX_BACKOFF = 10.0
STABLE_RUN = 10.0
TICK = 0.2
READINESS_PERIOD = 1.0


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state in the network namespace of a process."""
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split(None, 4)
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def field_value(pod: Obj, path: str) -> str:
    if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
        section, rest = path.split("['", 1)
        return str(pod["metadata"].get(section.split(".")[1], {}).get(rest.rstrip("']"), ""))
    value: Any = pod
    for part in path.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return str(value)


def container_env(container: Obj, pod: Obj, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env["HOSTNAME"] = pod["metadata"]["name"]
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "fieldRef" in (item.get("valueFrom") or {}):
            env[item["name"]] = field_value(pod, item["valueFrom"]["fieldRef"]["fieldPath"])
    return env


def run_as_user(container: Obj, pod: Obj) -> int | None:
    security = container.get("securityContext") or {}
    uid = security.get("runAsUser", (pod["spec"].get("securityContext") or {}).get("runAsUser"))
    return None if uid is None else int(uid)


def user_prefix(container: Obj, pod: Obj) -> list[str]:
    """setpriv arguments for the container's runAsUser, granting its capabilities as ambient ones."""
    uid = run_as_user(container, pod)
    if not uid:
        return []
    security = container.get("securityContext") or {}
    caps = [c.lower() for c in (security.get("capabilities") or {}).get("add") or []]
    if security.get("privileged"):
        caps += PRIVILEGED_CAPS
    prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    if caps:
        listed = ",".join(f"+{c}" for c in sorted(set(caps)))
        prefix += [f"--inh-caps={listed}", f"--ambient-caps={listed}"]
    return [*prefix, "--"]


@dataclass
class Container:
    """What the kubelet knows of one container: its process and its status."""

    spec: Obj
    init: bool
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "PodInitializing"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    next_start: float = 0.0
    next_probe: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> Obj:
        pid = self.process.pid if self.process else 0
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"nginmesh-local://{catalogue.repository(self.spec.get('image', ''))}",
            "containerID": f"nginmesh-local://{pid}" if pid else "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodRunner(threading.Thread):
    """Runs one pod from sandbox to teardown; the pod object is removed from the store once it is gone."""

    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        super().__init__(name=f"pod-{pod['metadata']['name']}", daemon=True)
        self.kubelet = kubelet
        self.key = key_of(pod)
        self.pod = pod
        self.stopping = threading.Event()
        meta = pod["metadata"]
        self.netns = pod_netns(kubelet.cluster, meta["namespace"], meta["name"])
        self.directory = kubelet.pods_dir / f"{meta['namespace']}_{meta['name']}"
        spec = pod["spec"]
        self.init_containers = [Container(c, True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c, False) for c in spec.get("containers") or []]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.pod_ip = ""
        self.phase = "Pending"
        self.reason = ""
        self.message = ""
        self.start_time = now()
        self.conditions: dict[str, tuple[str, str]] = {"PodScheduled": ("True", now())}

    # -- lifecycle ----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._sandbox()
            if self._run_init_containers():
                self._run_containers()
        except Exception as e:  # a pod must never take the kubelet down
            log.exception("pod %s failed", self.key)
            self.phase, self.reason, self.message = "Failed", "KubeletError", str(e)
            self._publish()
            self.stopping.wait()
        finally:
            self._teardown()

    def stop(self) -> None:
        self.stopping.set()

    def _sandbox(self) -> None:
        k = self.kubelet
        (self.directory / "volumes").mkdir(parents=True, exist_ok=True)
        self.pod_ip = k.pod_ips.allocate()
        k.network.add_pod(self.netns, pod_link(self.pod["metadata"]["uid"]), self.pod_ip)
        k.on_pod_added(self.pod["metadata"]["namespace"], self.netns, self.pod["metadata"]["name"], self.pod_ip)
        self.pod.setdefault("status", {})["podIP"] = self.pod_ip
        self._prepare_volumes()
        self._event("Scheduled", f"Successfully assigned {self.key.name} to {k.node_name}")
        self._publish()

    def _prepare_volumes(self) -> None:
        for volume in self.pod["spec"].get("volumes") or []:
            path = self.directory / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)  # emptyDir is world-writable, so a non-root container can use it
            source = volume.get("configMap")
            if source:
                configmap = self.kubelet.store.get(
                    ObjectKey("ConfigMap", self.key.namespace, source.get("name", "")))
                for name, text in ((configmap or {}).get("data") or {}).items():
                    (path / name).write_text(text)

    def _teardown(self) -> None:
        for container in self.containers + self.init_containers:
            self._kill(container)
        if self.pod_ip:
            self.kubelet.on_pod_removed(self.netns)
            self.kubelet.network.remove_pod(self.netns)
            self.kubelet.pod_ips.release(self.pod_ip)
        self.kubelet.forget(self)

    # -- containers ---------------------------------------------------------------------------------
    def _run_init_containers(self) -> bool:
        for container in self.init_containers:
            container.state = {"waiting": {"reason": "PodInitializing"}}
        for container in self.init_containers:
            while True:
                if not self._start(container):
                    return False
                code = self._wait_exit(container)
                if code is None:
                    return False
                if code == 0:
                    container.ready = True
                    break
                if self.restart_policy == "Never":
                    self.phase, self.reason = "Failed", "InitContainerFailed"
                    self._publish()
                    self.stopping.wait()
                    return False
                self._schedule_restart(container, "Init:CrashLoopBackOff")
                if not self._sleep_until(container.next_start):
                    return False
        self.conditions["Initialized"] = ("True", now())
        return True

    def _run_containers(self) -> None:
        for container in self.containers:
            container.state = {"waiting": {"reason": "ContainerCreating"}}
        for container in self.containers:
            self._start(container)
        self.phase = "Running"
        while not self.stopping.is_set():
            changed = self._check_containers()
            if changed:
                self._publish()
            self.stopping.wait(TICK)

    def _check_containers(self) -> bool:
        changed = False
        finished = 0
        for container in self.containers:
            process = container.process
            if process is not None and process.poll() is not None:
                changed = True
                self._record_exit(container, process.returncode)
                restart = self.restart_policy == "Always" or (
                    self.restart_policy == "OnFailure" and process.returncode != 0)
                if restart:
                    self._schedule_restart(container, "CrashLoopBackOff")
            if container.process is None:
                if container.next_start and time.monotonic() >= container.next_start:
                    self._start(container)
                    changed = True
                elif "terminated" in container.state:
                    finished += 1
                continue
            if time.monotonic() >= container.next_probe:
                container.next_probe = time.monotonic() + (READINESS_PERIOD if container.ready else TICK)
                ready = self._is_ready(container)
                if ready != container.ready:
                    container.ready = ready
                    changed = True
        if finished == len(self.containers) and self.phase == "Running":
            failed = any(c.state["terminated"]["exitCode"] != 0 for c in self.containers)
            self.phase = "Failed" if failed else "Succeeded"
            changed = True
        return changed

    def _is_ready(self, container: Container) -> bool:
        program = catalogue.resolve(container.spec)
        if container.process is None or program is None:
            return False
        wanted = set(program.ready_ports)
        return not wanted or wanted <= listening_ports(container.process.pid)

    def _start(self, container: Container) -> bool:
        program = catalogue.resolve(container.spec)
        if program is None:
            image = container.spec.get("image", "")
            message = (f'image "{image}" is not in the local catalogue; known images: {catalogue.KNOWN_IMAGES}')
            container.state = {"waiting": {"reason": "ErrImagePull", "message": message}}
            self._event("Failed", f"Failed to pull image \"{image}\": {message}", "Warning")
            self._publish()
            self.stopping.wait()
            return False
        log_path = self.directory / f"{container.name}.log"
        if log_path.exists():
            log_path.replace(self.directory / f"{container.name}.previous.log")
        env = container_env(container.spec, self.pod, self.kubelet.base_env(self._mounts(container)))
        argv = ["ip", "netns", "exec", self.netns, *user_prefix(container.spec, self.pod), *program.argv]
        with log_path.open("ab") as out:
            uid = run_as_user(container.spec, self.pod)
            if uid:
                os.fchown(out.fileno(), uid, uid)  # the container may reopen /dev/stdout, as NGINX does
            container.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                                 cwd=self.directory, start_new_session=True)
        container.started = time.monotonic()
        container.next_start = 0.0
        container.state = {"running": {"startedAt": now()}}
        self._event("Started", f"Started container {container.name}")
        self._publish()
        return True

    def _mounts(self, container: Container) -> dict[str, str]:
        return {m["mountPath"].rstrip("/") or "/": str(self.directory / "volumes" / m["name"])
                for m in container.spec.get("volumeMounts") or []}

    def _wait_exit(self, container: Container) -> int | None:
        assert container.process is not None
        while not self.stopping.is_set():
            code = container.process.poll()
            if code is not None:
                self._record_exit(container, code)
                self._publish()
                return code
            self.stopping.wait(TICK / 2)
        return None

    def _record_exit(self, container: Container, code: int) -> None:
        if code < 0:  # killed by a signal: report it as a container runtime does, 128 + signal
            code = 128 - code
        started = container.state.get("running", {}).get("startedAt", now())
        container.state = {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": started, "finishedAt": now(),
            "containerID": container.status()["containerID"],
        }}
        if container.started and time.monotonic() - container.started > STABLE_RUN:
            container.next_start = 0.0
        container.process = None
        container.ready = False

    def _schedule_restart(self, container: Container, reason: str) -> None:
        container.last_state = container.state
        container.restart_count += 1
        delay = min(MAX_BACKOFF, 0.5 * 2 ** min(container.restart_count - 1, 5))
        container.next_start = time.monotonic() + delay
        message = f"Back-off {delay:g}s restarting failed container={container.name} pod={self.key.name}"
        container.state = {"waiting": {"reason": reason, "message": message}}
        self._event("BackOff", message, "Warning")

    def _sleep_until(self, deadline: float) -> bool:
        self._publish()
        return not self.stopping.wait(max(0.0, deadline - time.monotonic()))

    def _kill(self, container: Container) -> None:
        process = container.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(self.kubelet.grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    # -- status -------------------------------------------------------------------------------------
    def _publish(self) -> None:
        ready = bool(self.containers) and all(c.ready for c in self.containers) and self.phase == "Running"
        self._condition("ContainersReady", ready)
        self._condition("Ready", ready)
        status: Obj = {
            "phase": self.phase,
            "conditions": [{"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": at}
                           for t, (s, at) in self.conditions.items()],
            "hostIP": self.kubelet.network.addresses.node_ip,
            "podIP": self.pod_ip,
            "startTime": self.start_time,
            "qosClass": "BestEffort",
            "initContainerStatuses": [c.status() for c in self.init_containers],
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.reason:
            status["reason"] = self.reason
            status["message"] = self.message
        if not self.init_containers:
            del status["initContainerStatuses"]
        self.kubelet.store.update(self.key, lambda pod: pod.__setitem__("status", status))

    def _condition(self, kind: str, value: bool) -> None:
        wanted = "True" if value else "False"
        if self.conditions.get(kind, ("", ""))[0] != wanted:
            self.conditions[kind] = (wanted, now())

    def _event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.kubelet.store.record_event(self.pod, reason, message, type_)


class Kubelet:
    """Starts a PodRunner for every pod of the store, and stops it when the pod is being deleted."""

    def __init__(self, cluster: str, store: Store, network: NodeNetwork, state_dir: Path, grace: float) -> None:
        self.cluster = cluster
        self.store = store
        self.network = network
        self.grace = grace
        self.pods_dir = state_dir / "pods"
        self.node_name = f"{cluster}-node"
        self.api_socket = state_dir / "api.sock"
        self.on_pod_added: Callable[[str, str, str, str], None] = lambda namespace, netns, name, ip: None
        self.on_pod_removed: Callable[[str], None] = lambda netns: None
        self.pod_ips = Allocator(network.addresses.pod_cidr)
        self.runners: dict[ObjectKey, PodRunner] = {}
        self._lock = threading.Lock()

    def base_env(self, mounts: dict[str, str]) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "PYTHONUNBUFFERED": "1",
            "HOME": "/tmp",
            "NGINMESH_API_SOCKET": str(self.api_socket),
            "NGINMESH_VOLUMES": json.dumps(mounts),
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        }

    def sync(self) -> None:
        for pod in self.store.objects("Pod"):
            key = key_of(pod)
            with self._lock:
                runner = self.runners.get(key)
                if runner is None and not pod["metadata"].get("deletionTimestamp"):
                    runner = PodRunner(self, pod)
                    self.runners[key] = runner
                    pod["spec"]["nodeName"] = self.node_name
                    self.store.update(key, lambda p: p["spec"].__setitem__("nodeName", self.node_name))
                    runner.start()
                elif runner is not None and pod["metadata"].get("deletionTimestamp"):
                    runner.stop()
                elif runner is None:
                    self.store.delete(key)

    def forget(self, runner: PodRunner) -> None:
        with self._lock:
            if self.runners.get(runner.key) is runner:
                del self.runners[runner.key]
        current = self.store.get(runner.key)
        if current is not None and current["metadata"]["uid"] == runner.pod["metadata"]["uid"]:
            self.store.delete(runner.key)

    def shutdown(self) -> None:
        with self._lock:
            runners = list(self.runners.values())
        for runner in runners:
            runner.stop()
        for runner in runners:
            runner.join(self.grace + 10)
