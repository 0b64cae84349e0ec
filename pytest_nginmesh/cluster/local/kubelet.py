"""A small kubelet: runs each pod spec as processes in the pod's namespace and writes Kubernetes status.

Each container runs in a cgroup of its own (everything it forks stays there and dies with it), in a mount
namespace of its own that the launcher builds (launcher.py), and is ready when its readiness probe passes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ClusterError
from ...kube import Obj, ObjectKey, key_of
from . import catalogue, system
from .cgroup import Cgroup
from .launcher import NODE_PATH, LaunchSpec, VolumeMount, program_env
from .network import ETC_NETNS, Allocator, NodeNetwork, pod_link, pod_netns
from .paths import inside
from .probes import Probe, ProbeError, Prober
from .serviceaccounts import API_SERVICE
from .store import Store, now

log = logging.getLogger(__name__)

PRIVILEGED_CAPS = ("net_admin", "net_raw", "net_bind_service")
MAX_BACKOFF = 10.0
STABLE_RUN = 10.0
TICK = 0.2
LAUNCHER_MODULE = "pytest_nginmesh.cluster.local.launcher"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
# Kubernetes volume modes (k8s.io/api core/v1 ConfigMapVolumeSource/SecretVolumeSource.DefaultMode: 0644 by
# default); emptyDir here is world-writable only with the sticky bit, so no container removes another's files.
DEFAULT_FILE_MODE = 0o644
VOLUME_DIR_MODE = 0o755
EMPTY_DIR_MODE = 0o1777
LOG_MODE = system.PRIVATE_FILE_MODE
# What a kubelet publishes of the runtime it drives (NodeSystemInfo.containerRuntimeVersion: "<runtime>://<version>").
CONTAINER_RUNTIME_NAME = "nginmesh-local"
CONTAINER_RUNTIME = f"{CONTAINER_RUNTIME_NAME}://1"
# A container instance's ID: 64 hex digits, new at every start, as Docker's and containerd's.
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def service_env_vars(service: Obj) -> dict[str, str]:
    """A Service's Docker-link-style variables, as kubelet's envvars.FromServices makes them: ``<NAME>_SERVICE_HOST``,
    ``<NAME>_SERVICE_PORT`` (the first port), ``<NAME>_SERVICE_PORT_<PORT NAME>``, and ``<NAME>_PORT…``."""
    name = service["metadata"]["name"].upper().replace("-", "_")
    spec = service.get("spec") or {}
    host, ports = spec.get("clusterIP"), spec.get("ports") or []
    if not host or host == "None" or not ports:
        return {}
    env = {f"{name}_SERVICE_HOST": host, f"{name}_SERVICE_PORT": str(ports[0]["port"])}
    for port in ports:
        protocol = str(port.get("protocol", "TCP"))
        if port.get("name"):
            env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        prefix = f"{name}_PORT_{port['port']}_{protocol}"
        env |= {prefix: f"{protocol.lower()}://{host}:{port['port']}", f"{prefix}_PROTO": protocol.lower(),
                f"{prefix}_PORT": str(port["port"]), f"{prefix}_ADDR": host}
    env[f"{name}_PORT"] = f"{str(ports[0].get('protocol', 'TCP')).lower()}://{host}:{ports[0]['port']}"
    return env


def node_object(name: str, node_ip: str, pod_cidr: str, kubelet_version: str, at: str) -> Obj:
    """The Node a kubelet registers for itself, as kubernetes/kubernetes pkg/kubelet/kubelet_node_status.go
    (initialNode: the kubernetes.io/hostname, kubernetes.io/os and kubernetes.io/arch labels) and
    pkg/kubelet/nodestatus/setters.go (NodeAddress: InternalIP and Hostname; ReadyCondition: reason
    KubeletReady, "kubelet is posting ready status"; VersionInfo: kubeletVersion) make it."""
    machine = os.uname()
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                              "kubernetes.io/arch": "amd64" if machine.machine == "x86_64"
                                              else machine.machine}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status", "lastHeartbeatTime": at,
                            "lastTransitionTime": at}],
            "nodeInfo": {"kubeletVersion": kubelet_version, "kubeProxyVersion": kubelet_version,
                         "operatingSystem": "linux", "architecture": machine.machine,
                         "kernelVersion": machine.release, "osImage": machine.sysname,
                         "containerRuntimeVersion": CONTAINER_RUNTIME,
                         "machineID": "", "systemUUID": "", "bootID": ""},
        },
    }


def field_value(pod: Obj, path: str) -> str:
    if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
        section, rest = path.split("['", 1)
        return str(pod["metadata"].get(section.split(".")[1], {}).get(rest.rstrip("']"), ""))
    value: Any = pod
    for part in path.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return str(value)


def container_env(container: Obj, pod: Obj, base: dict[str, str]) -> dict[str, str]:
    """The env of the container's processes (and of an exec in it): ``base``, then the manifest's, without
    the loader's variables, with the node's PATH (launcher.program_env)."""
    env = dict(base)
    env["HOSTNAME"] = pod["metadata"]["name"]
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "fieldRef" in (item.get("valueFrom") or {}):
            env[item["name"]] = field_value(pod, item["valueFrom"]["fieldRef"]["fieldPath"])
    return program_env(env)


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
    prefix = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    if caps:
        listed = ",".join(f"+{c}" for c in sorted(set(caps)))
        prefix += [f"--inh-caps={listed}", f"--ambient-caps={listed}"]
    return [*prefix, "--"]


def enter_argv(pid: int, container: Obj, pod: Obj, command: Sequence[str]) -> list[str]:
    """Run ``command`` in the mount and network namespaces of the container process ``pid``, as its user."""
    return [NSENTER, "-t", str(pid), "-m", "-n", *user_prefix(container, pod), *command]


def instance_cgroup(cluster: str, pod: Obj, status: Obj) -> Cgroup:
    """The cgroup of the container instance a containerStatus names (its ID is the cgroup's name, as a
    container runtime names its cgroups: what finds a container's processes in /proc/<pid>/cgroup)."""
    container_id = str(status.get("containerID") or "").split("://", 1)[-1]
    if not CONTAINER_ID.fullmatch(container_id):
        raise ClusterError(f"container {status.get('name')} of pod {pod['metadata']['name']} is not running: "
                           "wait for it (nginmesh local get pods)")
    return Cgroup.of_cluster(cluster).child("pods", pod["metadata"]["uid"], str(status["name"]), container_id)


def main_process(cgroup: Cgroup) -> int | None:
    """The container's own process: the first started of its cgroup (what it forked and what exec ran came
    later)."""
    started = []
    for pid in cgroup.pids():
        with contextlib.suppress(OSError, IndexError, ValueError):
            started.append((int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]), pid))
    return min(started)[1] if started else None


def exec_in_container(cluster: str, pod: Obj, container: Obj, command: Sequence[str]
                      ) -> tuple[list[str], dict[str, str]]:
    """The host argv and env that run ``command`` in a running container as a runtime's exec does: in its
    cgroup (it goes when the container goes), its mount and network namespaces, as its user, with its env."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    statuses = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    found: Obj = next((s for s in statuses if s.get("name") == container["name"]), {"name": container["name"]})
    if "running" not in (found.get("state") or {}):
        raise ClusterError(f"container {container['name']} of pod {name} is not running: "
                           "wait for it (nginmesh local get pods)")
    cgroup = instance_cgroup(cluster, pod, found)
    pid = main_process(cgroup)
    if pid is None:  # the container restarted (or stopped) since the status was read
        raise ClusterError(f"container {container['name']} of pod {name} has just restarted: run the command again")
    env = container_env(container, pod, {"PATH": NODE_PATH, "HOME": "/tmp"})
    return cgroup.launch_argv(enter_argv(pid, container, pod, command)), env


def write_volume_file(path: Path, data: bytes, mode: int) -> None:
    """Write a configMap or secret file with exactly ``mode``, never through a symlink planted where it goes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass
class Container:
    """What the kubelet knows of one container: its process, cgroup, prober and status."""

    spec: Obj
    init: bool
    process: subprocess.Popen[bytes] | None = None
    cgroup: Cgroup | None = None  # of the running instance: <pod cgroup>/<name>/<container ID>
    container_id: str = ""
    prober: Prober | None = None
    started: float = 0.0
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "PodInitializing"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    next_start: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> Obj:
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"{CONTAINER_RUNTIME_NAME}://{catalogue.repository(self.spec.get('image', ''))}",
            "containerID": f"{CONTAINER_RUNTIME_NAME}://{self.container_id}" if self.container_id else "",
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
        self.directory = inside(kubelet.pods_dir, f"{meta['namespace']}_{meta['name']}")
        self.cgroup = kubelet.pods_cgroup.child(meta["uid"])
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
        for directory in (self.directory, self.directory / "volumes", self.directory / "containers"):
            system.make_private_dir(directory)
        self.pod_ip = k.pod_ips.allocate()
        k.network.add_pod(self.netns, pod_link(self.pod["metadata"]["uid"]), self.pod_ip)
        k.on_pod_added(self.pod["metadata"]["namespace"], self.netns, self.pod["metadata"]["name"], self.pod_ip)
        self.pod.setdefault("status", {})["podIP"] = self.pod_ip
        self._prepare_volumes()
        self._event("Scheduled", f"Successfully assigned {self.key.name} to {k.node_name}")
        self._publish()

    def _prepare_volumes(self) -> None:
        for volume in self.pod["spec"].get("volumes") or []:
            path = inside(self.directory, "volumes", volume["name"])
            files, mode = self._volume_files(volume)
            if files is None:  # emptyDir (and every kind this kubelet does not fill)
                path.mkdir(exist_ok=True)
                path.chmod(EMPTY_DIR_MODE)
                continue
            path.mkdir(exist_ok=True)
            path.chmod(VOLUME_DIR_MODE)
            for name, data in files.items():
                write_volume_file(inside(path, name), data, mode)

    def _volume_files(self, volume: Obj) -> tuple[dict[str, bytes] | None, int]:
        """The files of a configMap or secret volume and their mode; None for a directory to write in."""
        for kind, source_key, name_key in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
            source = volume.get(source_key)
            if source is None:
                continue
            mode = int(source.get("defaultMode", DEFAULT_FILE_MODE)) & 0o777
            obj = self.kubelet.store.get(ObjectKey(kind, self.key.namespace, str(source.get(name_key, "")))) or {}
            data: dict[str, bytes] = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            if kind == "ConfigMap":
                data.update({k: base64.b64decode(str(v)) for k, v in (obj.get("binaryData") or {}).items()})
            else:
                try:
                    data = {k: base64.b64decode(str(v), validate=True) for k, v in (obj.get("data") or {}).items()}
                except binascii.Error as e:
                    raise ClusterError(f"secret {source.get(name_key)}: data is not base64 ({e})") from e
                data.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
            items = source.get("items")
            if items:
                data = {str(item["path"]): data[item["key"]] for item in items if item.get("key") in data}
            return data, mode
        return None, 0

    def _teardown(self) -> None:
        """Kill every container, free the pod's cgroups, network and directory; each step whatever the others do.
        The containers are stopped at once, each given the whole grace period, as a kubelet kills them."""
        killers = [threading.Thread(target=self._attempt, args=(f"stop container {c.name}", self._kill, c),
                                    name=f"kill-{c.name}", daemon=True) for c in self.containers + self.init_containers]
        for killer in killers:
            killer.start()
        for killer in killers:
            killer.join()
        self._attempt("remove the pod's cgroups", self.cgroup.remove, self.kubelet.grace + 5)
        if self.pod_ip:
            self._attempt("forget the pod's network", self.kubelet.on_pod_removed, self.netns)
            self._attempt("remove the pod's network", self.kubelet.network.remove_pod, self.netns)
            self._attempt("release the pod's address", self.kubelet.pod_ips.release, self.pod_ip)
        if self.directory.exists():
            self._attempt("remove the pod's directory", shutil.rmtree, self.directory)
        self.kubelet.forget(self)

    def _attempt(self, what: str, step: Callable[..., object], *args: Any) -> None:
        try:
            step(*args)
        except Exception:
            log.exception("pod %s: could not %s", self.key, what)

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
        self._publish()
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
            ready = container.prober.ready if container.prober is not None else True
            if ready != container.ready:
                container.ready = ready
                changed = True
        if finished == len(self.containers) and self.phase == "Running":
            failed = any(c.state["terminated"]["exitCode"] != 0 for c in self.containers)
            self.phase = "Failed" if failed else "Succeeded"
            changed = True
        return changed

    def _start(self, container: Container) -> bool:
        program = catalogue.program_of(container.spec)
        if program is None:
            image = container.spec.get("image", "")
            message = (f'image "{image}" is not in the local catalogue; known images: {catalogue.KNOWN_IMAGES}')
            return self._cannot_start(container, "ErrImagePull", message, f"Failed to pull image \"{image}\"")
        probe: Probe | None = None
        probe_spec = None if container.init else catalogue.readiness_probe(container.spec, program)
        try:
            probe = Probe.from_spec(probe_spec) if probe_spec else None
        except ProbeError as e:
            return self._cannot_start(container, "CreateContainerConfigError", str(e), "Error")
        instances = self.cgroup.child(container.name)
        self._kill_cgroup(instances)  # nothing of an earlier instance outlives it
        for earlier in instances.path.glob("*/"):
            instances.child(earlier.name).remove(self.kubelet.grace + 5)
        container.container_id = secrets.token_hex(32)
        container.cgroup = instances.child(container.container_id).create()
        spec_path = self._write_launch_spec(container, program.argv)
        log_fd = self._open_log(container)
        try:
            launch = ["ip", "netns", "exec", self.netns, sys.executable, "-I", "-m", LAUNCHER_MODULE, str(spec_path)]
            container.process = subprocess.Popen(container.cgroup.launch_argv(launch), stdout=log_fd,
                                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                 env={"PATH": NODE_PATH}, cwd="/", start_new_session=True)
        finally:
            os.close(log_fd)
        container.started = time.monotonic()
        container.next_start = 0.0
        container.state = {"running": {"startedAt": now()}}
        if probe is not None:
            pid = container.process.pid
            container.prober = Prober(probe, container.spec, f"/run/netns/{self.netns}",
                                      lambda command: enter_argv(pid, container.spec, self.pod, command),
                                      f"{self.key.name}-{container.name}")
            container.prober.start()
        self._event("Started", f"Started container {container.name}")
        self._publish()
        return True

    def _cannot_start(self, container: Container, reason: str, message: str, event: str) -> bool:
        container.state = {"waiting": {"reason": reason, "message": message}}
        self._event("Failed", f"{event}: {message}", "Warning")
        self._publish()
        self.stopping.wait()
        return False

    def _open_log(self, container: Container) -> int:
        """The container's log, 0600 and owned by its user (it may reopen /dev/stdout, as NGINX does)."""
        log_path = inside(self.directory, f"{container.name}.log")
        if log_path.exists():
            log_path.replace(inside(self.directory, f"{container.name}.previous.log"))
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, LOG_MODE)
        os.fchmod(fd, LOG_MODE)
        uid = run_as_user(container.spec, self.pod)
        if uid:
            os.fchown(fd, uid, uid)
        return fd

    def _write_launch_spec(self, container: Container, program_argv: list[str]) -> Path:
        """What the launcher builds for this container, in a root-only file of the pod's directory."""
        stage = inside(self.directory, "containers", container.name)
        system.make_private_dir(stage)
        mounts = tuple(VolumeMount(str(inside(self.directory, "volumes", m["name"])), str(m["mountPath"]),
                                   bool(m.get("readOnly")))
                       for m in container.spec.get("volumeMounts") or [])
        env = container_env(container.spec, self.pod, self.kubelet.base_env())
        spec = LaunchSpec(str(stage), str(self.kubelet.state_root), str(ETC_NETNS / self.netns), mounts,
                          str(container.spec.get("workingDir") or "/"),
                          (*user_prefix(container.spec, self.pod), *program_argv), env)
        path = inside(self.directory, "containers", f"{container.name}.json")
        system.write_private(path, spec.to_json())
        return path

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
        self._stop_prober(container)
        if container.cgroup is not None:  # what it forked (NGINX workers of a killed master) goes with it
            self._kill_cgroup(container.cgroup)
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

    def _stop_prober(self, container: Container) -> None:
        if container.prober is not None:
            container.prober.stop()
            container.prober = None

    def _kill_cgroup(self, cgroup: Cgroup) -> None:
        """SIGTERM to every process of the cgroup, the grace period, then SIGKILL to what is left."""
        if not cgroup.populated():
            return
        cgroup.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.kubelet.grace
        while cgroup.populated() and time.monotonic() < deadline:
            time.sleep(0.05)
        cgroup.kill(self.kubelet.grace + 5)

    def _kill(self, container: Container) -> None:
        self._stop_prober(container)
        if container.cgroup is not None:
            self._kill_cgroup(container.cgroup)
        if container.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                container.process.wait(self.kubelet.grace)

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
        system.make_private_dir(self.pods_dir)
        self.state_root = state_dir.parent
        self.pods_cgroup = Cgroup.of_cluster(cluster).child("pods")
        self.node_name = f"{cluster}-node"
        self.on_pod_added: Callable[[str, str, str, str], None] = lambda namespace, netns, name, ip: None
        self.on_pod_removed: Callable[[str], None] = lambda netns: None
        self.pod_ips = Allocator(network.addresses.pod_cidr)
        self.runners: dict[ObjectKey, PodRunner] = {}
        self._lock = threading.Lock()
        self.register_node()

    def register_node(self) -> None:
        """Register this node (its InternalIP is the node address pods and NodePorts are reached at), as a
        kubelet does at start."""
        from .rest.server import VERSION  # here: the REST API imports the controllers, which import the kubelet

        addresses = self.network.addresses
        self.store.put(node_object(self.node_name, addresses.node_ip, addresses.pod_cidr, VERSION["gitVersion"],
                                   now()))

    def base_env(self) -> dict[str, str]:
        """The env every container starts from, before its own (the launcher sets PATH to the node's): with the
        ``kubernetes`` Service's variables, as every kubelet gives every container, so in-cluster clients find
        the API (kubernetes pkg/kubelet/envvars/envvars.go FromServices; the master service is always there)."""
        env = {"PATH": NODE_PATH, "HOME": "/tmp"}
        service = self.store.get(API_SERVICE)
        if service is not None:
            env |= service_env_vars(service)
        return env

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
