"""Is a pod's sidecar injected right? Judged from the pod as Kubernetes returns it (spec and status)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..injection_policy import (
    INIT_CONTAINER,
    INJECT_ANNOTATION,
    INJECTED_KINDS,
    POD_ANNOTATION_POLICY,
    PROXY_CONTAINER,
    PROXY_PORT,
    PROXY_UID,
    STATUS_ANNOTATION,
    InjectionPolicy,
)
from ..kube import Obj, annotations_of, labels_of, selector_matches
from ..observe import reports_findings
from ..profiles import Profile
from .findings import Finding


@dataclass(frozen=True)
class SidecarExpectations:
    """What the mesh profile promises about every injected pod."""

    proxy_port: int = PROXY_PORT
    proxy_uid: int = PROXY_UID
    proxy_image: str | None = None
    init_image: str | None = None
    proxy_container: str = PROXY_CONTAINER
    init_container: str = INIT_CONTAINER
    policy: str = "enabled"
    injection: InjectionPolicy = POD_ANNOTATION_POLICY

    @classmethod
    def for_profile(cls, profile: Profile, proxy_image: str | None = None,
                    init_image: str | None = None) -> SidecarExpectations:
        """The profile's promises; images given here replace the profile's (release qualification)."""
        return cls(proxy_port=profile.proxy_port, proxy_uid=profile.proxy_uid,
                   proxy_image=proxy_image or profile.proxy_image, init_image=init_image or profile.init_image,
                   injection=profile.injection_policy)


def owning_workload(pod: Obj, objects: Iterable[Obj]) -> Obj | None:
    """The Deployment, StatefulSet, Job or DaemonSet among ``objects`` whose selector picks this pod."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    for obj in objects:
        if obj.get("kind") not in INJECTED_KINDS or ((obj.get("metadata") or {}).get("namespace") or "default") \
                != namespace:
            continue
        spec = obj.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") \
            or labels_of(spec.get("template") or {})
        if selector and selector_matches(selector, labels_of(pod)):
            return obj
    return None


def namespace_object(pod: Obj, objects: Iterable[Obj]) -> Obj | None:
    """The pod's Namespace among ``objects``, if the listing has it."""
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    return next((o for o in objects if o.get("kind") == "Namespace"
                 and (o.get("metadata") or {}).get("name") == namespace), None)


def subject_of(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"pod {meta.get('namespace', 'default')}/{meta.get('name', '?')}"


def _named(items: list[Obj] | None, name: str) -> Obj | None:
    return next((item for item in items or [] if item.get("name") == name), None)


def _flag_values(args: list[str], flag: str) -> list[str]:
    """Values of a short flag in an argv: '-p 15001', '-p15001' and '-p=15001' all count."""
    values = []
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(flag) and len(arg) > len(flag) and not arg.startswith("--"):
            values.append(arg[len(flag):].lstrip("="))
    return values


@reports_findings
def check_pod(pod: Obj, expect: SidecarExpectations | None = None, workload: Obj | None = None,
              namespace: Obj | None = None) -> list[Finding]:
    """Findings for one pod; an empty list means it is conformant (pods the release leaves alone without a
    sidecar are). ``workload`` and ``namespace`` are the pod's owner and Namespace when the listing has them:
    a release that reads the opt-out from the workload (the Initializer) is judged by the workload's
    annotation; without the workload, the pod's own annotation may only excuse a missing sidecar."""
    expect = expect or SidecarExpectations()
    policy = expect.injection
    subject = subject_of(pod)
    spec: Obj = pod.get("spec") or {}
    meta: Obj = pod.get("metadata") or {}
    pod_namespace = meta.get("namespace") or "default"
    marks = annotations_of(pod)
    proxy = _named(spec.get("containers"), expect.proxy_container)
    undecided = policy.annotation_on == "workload" and workload is None
    requested = policy.requested(pod, workload)
    shown = annotations_of(workload or pod).get(INJECT_ANNOTATION)

    def finding(id_: str, message: str, **evidence: Any) -> Finding:
        return Finding(f"sidecar.{id_}", subject, message, evidence)

    if spec.get("hostNetwork"):
        return [finding("injected-host-network", "a hostNetwork pod carries a sidecar; it must not be injected",
                        containers=[c.get("name") for c in spec.get("containers") or []])] if proxy else []
    if pod_namespace in policy.ignored_namespaces or not policy.namespace_selected(namespace):
        return [finding("injected-in-ignored-namespace",
                        f"namespace {pod_namespace} is never injected by this release, but the pod has "
                        f"{expect.proxy_container}", namespace=pod_namespace)] if proxy else []
    if undecided:
        # The release read an annotation this listing lacks: the pod's copy may excuse a missing sidecar only.
        own = str(marks.get(INJECT_ANNOTATION, "")).lower()
        if proxy is None and not policy.injects(pod_namespace, own, enabled=expect.policy == "enabled"):
            return []
    elif not policy.injects(pod_namespace, requested, enabled=expect.policy == "enabled"):
        if requested:
            where = "its workload" if policy.annotation_on == "workload" else "the pod"
            return [finding("opted-out-but-injected", f"{where} opted out ({INJECT_ANNOTATION}: \"{requested}\") "
                            f"but has {expect.proxy_container}", annotation=shown)] if proxy else []
        return [finding("injected-without-opt-in",
                        f"policy is disabled and the pod did not opt in, but it has {expect.proxy_container}",
                        annotation=shown)] if proxy else []

    findings: list[Finding] = []
    if STATUS_ANNOTATION not in marks:
        findings.append(finding("status-annotation-missing", f"annotation {STATUS_ANNOTATION} is missing",
                                annotations=marks))
    if proxy is None:
        findings.append(finding("proxy-missing", f"no {expect.proxy_container} container",
                                containers=[c.get("name") for c in spec.get("containers") or []]))
    else:
        findings += _check_proxy(pod, proxy, expect, finding)
    init = _named(spec.get("initContainers"), expect.init_container)
    if init is None:
        findings.append(finding("init-missing", f"no {expect.init_container} init container",
                                initContainers=[c.get("name") for c in spec.get("initContainers") or []]))
    else:
        findings += _check_init(pod, init, expect, finding)
    return findings


def _check_proxy(pod: Obj, proxy: Obj, expect: SidecarExpectations, finding: Any) -> list[Finding]:
    findings = []
    security = proxy.get("securityContext") or {}
    uid = security.get("runAsUser", ((pod.get("spec") or {}).get("securityContext") or {}).get("runAsUser"))
    if uid != expect.proxy_uid:
        shown = "root" if uid is None else uid
        findings.append(finding("proxy-uid", f"{expect.proxy_container} runs as uid {shown}, "
                                f"not {expect.proxy_uid}: its own traffic would be captured again",
                                runAsUser=uid, securityContext=security))
    if expect.proxy_image and proxy.get("image") != expect.proxy_image:
        findings.append(finding("proxy-image", f"{expect.proxy_container} image is {proxy.get('image')}, "
                                f"not {expect.proxy_image}", image=proxy.get("image")))
    status = _named((pod.get("status") or {}).get("containerStatuses"), expect.proxy_container)
    if status is None or not status.get("ready"):
        findings.append(finding("proxy-not-ready", f"{expect.proxy_container} is not ready",
                                status=status or "no container status"))
    return findings


def _check_init(pod: Obj, init: Obj, expect: SidecarExpectations, finding: Any) -> list[Finding]:
    findings = []
    args = [str(a) for a in (init.get("command") or []) + (init.get("args") or [])]
    ports, uids = _flag_values(args, "-p"), _flag_values(args, "-u")
    if ports != [str(expect.proxy_port)] or uids != [str(expect.proxy_uid)]:
        findings.append(finding("init-args", f"{expect.init_container} args do not set proxy port "
                                f"{expect.proxy_port} and uid {expect.proxy_uid}", args=args))
    security = init.get("securityContext") or {}
    caps = [str(c).upper() for c in (security.get("capabilities") or {}).get("add") or []]
    if not security.get("privileged") and "NET_ADMIN" not in caps and "CAP_NET_ADMIN" not in caps:
        findings.append(finding("init-capabilities", f"{expect.init_container} has neither NET_ADMIN nor "
                                "privileged: it cannot install the iptables rules", securityContext=security))
    if expect.init_image and init.get("image") != expect.init_image:
        findings.append(finding("init-image", f"{expect.init_container} image is {init.get('image')}, "
                                f"not {expect.init_image}", image=init.get("image")))
    status = _named((pod.get("status") or {}).get("initContainerStatuses"), expect.init_container)
    terminated = ((status or {}).get("state") or {}).get("terminated") or {}
    if terminated.get("exitCode") != 0:
        findings.append(finding("init-not-completed", f"{expect.init_container} has not completed with exit 0",
                                status=status or "no init container status"))
    return findings
