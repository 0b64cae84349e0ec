"""The ``nginmesh`` command: the packaged conformance suites (``nginmesh conformance``), control of the local
cluster (``nginmesh local …``), offline checks and cluster configs."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from . import __version__
from .checks.iptables import CaptureExpectations, check_rules
from .checks.report import render as render_results
from .checks.report import subject_result
from .checks.rules import analyze
from .checks.sidecar import SidecarExpectations, check_pod, namespace_object, owning_workload, subject_of
from .cluster.base import pod_is_ready, wait_for
from .cluster.k8s import KubernetesCluster
from .cluster.local import lifecycle
from .cluster.local.node import LocalNode, local_cluster
from .cluster.render import kind_config, kubeadm_config, to_yaml
from .cluster.versions import KubeVersion, check_profile_supports, node_image
from .errors import ClusterError, NginmeshError, NotFoundError, PreflightError, UsageError
from .injection_policy import INJECTED_KINDS, PROXY_PORT, PROXY_UID
from .kube import Obj, as_list, dumps, key_of, parse_manifests, read_manifest_file
from .mesh.install import install_mesh
from .profiles import PROFILES, Profile, get_profile
from .settings import Settings, settings_from_env

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# API answers that refuse a manifest (Bad Request, Not Found: a missing namespace, Request Entity Too Large,
# Unsupported Media Type, Invalid): bad input, exit 2.
REFUSED_CODES = frozenset({400, 404, 413, 415, 422})
# What `check pod` reads besides pods: the objects that decide a release's verdict (and ReplicaSets, which
# `kubectl get all` lists between Deployments and pods).
POD_CONTEXT_KINDS = INJECTED_KINDS | {"Namespace", "ReplicaSet"}
KIND_ALIASES = {
    "po": "Pod", "pod": "Pod", "pods": "Pod",
    "svc": "Service", "service": "Service", "services": "Service",
    "deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment",
    "ep": "Endpoints", "endpoints": "Endpoints",
    "cm": "ConfigMap", "configmap": "ConfigMap", "configmaps": "ConfigMap",
    "ns": "Namespace", "namespace": "Namespace", "namespaces": "Namespace",
    "ing": "Ingress", "ingress": "Ingress", "ingresses": "Ingress",
    "routerule": "RouteRule", "routerules": "RouteRule",
    "initializerconfiguration": "InitializerConfiguration",
    "initializerconfigurations": "InitializerConfiguration",
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2), as every other bad input of the command gets."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nginmesh", description="pytest-nginmesh command line.")
    parser.add_argument("--version", action="version", version=f"pytest-nginmesh {__version__}")
    commands = parser.add_subparsers(dest="group", required=True, metavar="{conformance,local,check,render}")
    commands.add_parser("conformance", add_help=False,
                        help="Run the conformance suites (installed with the package); arguments go to pytest.")
    local = commands.add_parser("local", help="Control the embedded local cluster.")
    verbs = local.add_subparsers(dest="verb", required=True)

    def verb(name: str, help_: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_, description=help_)
        sub.add_argument("--name", default=None, help="Cluster name (default: nginmesh).")
        sub.set_defaults(handler=handler)
        return sub

    def namespaced(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("-n", "--namespace", default="default", help="Namespace (default: default).")

    up = verb("up", "Start a local cluster with Istio, Nginmesh and Bookinfo, and wait until it serves.", cmd_up)
    up.add_argument("--bare", action="store_true", help="Start the cluster only: no control plane, no Bookinfo.")
    for flag in ("pod-cidr", "service-cidr", "link-cidr"):
        up.add_argument(f"--{flag}", help=f"Address range ({flag.replace('-', ' ')}).")
    verb("down", "Stop a local cluster and remove everything it made.", cmd_down)
    verb("status", "Say whether the cluster runs, and its addresses.", cmd_status)

    get = verb("get", "List objects (pods, services, deployments, routerules, …).", cmd_get)
    get.add_argument("kind", help="What to list, e.g. pods.")
    namespaced(get)
    get.add_argument("-A", "--all-namespaces", action="store_true", help="List across all namespaces.")
    get.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")

    for name, help_ in (("apply", "Create or update the objects of a manifest file."),
                        ("delete", "Delete the objects of a manifest file.")):
        sub = verb(name, help_, cmd_apply if name == "apply" else cmd_delete)
        sub.add_argument("-f", "--filename", required=True, help="YAML or JSON file, or - for stdin.")
        sub.add_argument("--no-wait", action="store_true", help="Return without waiting for the result.")

    exec_ = verb("exec", "Run a command in a container of a pod.", cmd_exec)
    namespaced(exec_)
    exec_.add_argument("pod")
    exec_.add_argument("-c", "--container", default=None)
    exec_.epilog = "The command follows '--': nginmesh local exec POD -c CONTAINER -- COMMAND [ARG…]"

    logs = verb("logs", "Print a container's log.", cmd_logs)
    namespaced(logs)
    logs.add_argument("pod")
    logs.add_argument("-c", "--container", default=None)
    logs.add_argument("-p", "--previous", action="store_true", help="The previous instance's log.")

    events = verb("events", "Print the cluster's events.", cmd_events)
    namespaced(events)

    url = verb("url", "Print an http URL for SERVICE:PORT, reachable from this host.", cmd_url)
    namespaced(url)
    url.add_argument("target", metavar="SERVICE:PORT")
    verb("ingress-url", "Print the http URL of the mesh ingress.", cmd_ingress_url)
    verb("kubeconfig", "Print a kubeconfig for the cluster's Kubernetes API (for kubectl and clients).",
         cmd_kubeconfig)
    add_check_commands(commands)
    add_render_commands(commands)
    return parser


def add_check_commands(commands: Any) -> None:
    check = commands.add_parser("check", help="Check recorded artefacts offline (exit 0 conformant, 1 findings).")
    kinds = check.add_subparsers(dest="verb", required=True)
    pod = kinds.add_parser("pod", help="Check pods (YAML or JSON: a Pod or a List of Pods; - for stdin).",
                           description="Check that pods carry a conformant sidecar. Workloads and Namespaces in "
                                       "the input decide a release's verdict for opt-outs and skipped namespaces.")
    pod.add_argument("files", nargs="+", metavar="FILE")
    pod.add_argument("--profile", default=None, choices=sorted(PROFILES), metavar="PROFILE",
                     help=f"Judge as this release injects ({', '.join(PROFILES)}): its images, ignored namespaces "
                          "and where it reads the opt-out (default: no release; the pod's own annotation).")
    pod.add_argument("--proxy-image", default=None, help="Expected istio-proxy image (default: the profile's).")
    pod.add_argument("--init-image", default=None, help="Expected istio-init image (default: the profile's).")
    pod.set_defaults(handler=cmd_check_pod)
    rules = kinds.add_parser("rules", help="Analyze route rules (YAML or JSON; - for stdin): exit 0 with warnings "
                                           "printed, 1 on errors, 2 on unreadable input.",
                             description="Analyze RouteRules offline, as istioctl analyze does: errors where Pilot "
                                         "0.2.12 would refuse a rule, warnings where a rule it accepts cannot work.")
    rules.add_argument("files", nargs="+", metavar="FILE")
    rules.add_argument("--workloads", nargs="+", default=None, metavar="FILE",
                       help="Services with their Deployments or Pods (kubectl get svc,deploy,pods -o yaml): "
                            "enables the checks of route labels.")
    rules.add_argument("--output", choices=["text", "json"], default="text")
    rules.set_defaults(handler=cmd_check_rules)
    iptables = kinds.add_parser("iptables", help="Check an iptables-save dump (- for stdin).",
                                description="Evaluate a pod's iptables-save dump for traffic capture.")
    iptables.add_argument("file", metavar="FILE")
    iptables.add_argument("--include-ranges", default="", metavar="CIDR,…",
                          help="Outbound ranges the mesh captures (prepare_proxy.sh -i).")
    iptables.add_argument("--pod-ip", default="10.251.0.10", help="The pod's address, if the rules name it.")
    iptables.set_defaults(handler=cmd_check_iptables)
    for sub in (pod, iptables):
        sub.add_argument("--proxy-port", type=int, default=PROXY_PORT, help="Proxy port (default 15001).")
        sub.add_argument("--proxy-uid", type=int, default=PROXY_UID, help="Proxy uid (default 1337).")
        sub.add_argument("--output", choices=["text", "json"], default="text")


def add_render_commands(commands: Any) -> None:
    render = commands.add_parser("render", help="Print kind or kubeadm configs for a cluster that runs a profile.")
    kinds = render.add_subparsers(dest="verb", required=True)
    kind = kinds.add_parser("kind-config", help="A kind Cluster config (YAML on stdout).",
                            description="Print a one-node kind Cluster config with the profile's admission flags.")
    kind.add_argument("--node-image", default=None, help="Node image (default: the pinned kindest/node image).")
    kind.set_defaults(handler=cmd_render_kind)
    kubeadm = kinds.add_parser("kubeadm-config", help="A kubeadm init config (YAML on stdout).",
                               description="Print the documents for kubeadm init --config, in the API of that "
                                           "Kubernetes version.")
    kubeadm.add_argument("--advertise-address", default=None, help="The API server's advertise address.")
    kubeadm.set_defaults(handler=cmd_render_kubeadm)
    for sub in (kind, kubeadm):
        sub.add_argument("--k8s-version", required=True, metavar="V", help="Kubernetes version, e.g. 1.13.")
        sub.add_argument("--profile", default="nginmesh-0.2.12", help="Mesh profile (default: nginmesh-0.2.12).")


def render_target(args: argparse.Namespace) -> tuple[KubeVersion, Profile]:
    """The version and profile to render, checked against each other in the command's own option names."""
    version = KubeVersion.parse(args.k8s_version, "--k8s-version")
    profile = get_profile(args.profile)
    check_profile_supports(profile, version, version_option="--k8s-version", profile_option="--profile")
    return version, profile


def cmd_render_kind(args: argparse.Namespace) -> int:
    version, profile = render_target(args)
    image = args.node_image or node_image(version, image_option="--node-image",
                                          kubeadm_hint="nginmesh render kubeadm-config").image
    sys.stdout.write(to_yaml(kind_config(version, profile, image)))
    return EXIT_OK


def cmd_render_kubeadm(args: argparse.Namespace) -> int:
    version, profile = render_target(args)
    sys.stdout.write(to_yaml(kubeadm_config(version, profile, advertise_address=args.advertise_address)))
    return EXIT_OK


def settings_for(args: argparse.Namespace) -> Settings:
    overrides = settings_from_env()
    if args.name is not None:  # --name "" is a bad name, not the default cluster
        overrides["cluster_name"] = args.name
    for field in ("pod_cidr", "service_cidr", "link_cidr"):
        if getattr(args, field, None):
            overrides[field] = getattr(args, field)
    return Settings().with_overrides(overrides)


def progress(line: str) -> None:
    print(f"nginmesh: {line}", file=sys.stderr, flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception so that what an interrupted command made is removed on the way out."""


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def cmd_up(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    signal.signal(signal.SIGTERM, raise_terminated)
    with lifecycle.building(settings, mesh=not args.bare, progress=progress) as started:
        progress(f"cluster {settings.cluster_name} {'started' if started else 'is already running'}")
        if started and not args.bare:
            install_mesh(local_cluster(settings), settings.timeouts, progress, settings.mesh_profile)
    if not args.bare:
        print(f"ingress: {local_cluster(settings).ingress_url()}")
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    with lifecycle.signals_held():
        removed = lifecycle.down(settings_for(args))
    progress("removed " + (", ".join(removed) if removed else "nothing: no such cluster"))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    if not lifecycle.is_running(settings):
        print(f"cluster {settings.cluster_name}: not running")
        return EXIT_FAILED
    if not lifecycle.is_complete(settings):
        print(f"cluster {settings.cluster_name}: not complete (being started, or its start was interrupted: "
              f"'nginmesh local up' rebuilds it)")
        return EXIT_FAILED
    pods = local_cluster(settings).list_pods()
    ready = sum(1 for p in pods if pod_is_ready(p))
    print(f"cluster {settings.cluster_name}: running; node {LocalNode(settings).node_ip}; "
          f"pods {ready}/{len(pods)} ready; state {settings.state_dir}")
    return EXIT_OK


def kind_of(word: str) -> str:
    kind = KIND_ALIASES.get(word.lower())
    if kind is None:
        if word[:1].isupper():
            return word
        raise UsageError(f"unknown kind {word!r}: use e.g. pods, services, deployments, routerules, or a Kind")
    return kind


def cmd_get(args: argparse.Namespace) -> int:
    cluster = local_cluster(settings_for(args))
    kind = kind_of(args.kind)
    namespace = None if args.all_namespaces else args.namespace
    objects = cluster.list_objects(kind, None if kind in ("Namespace", "InitializerConfiguration") else namespace)
    if args.output != "table":
        sys.stdout.write(dumps(as_list(objects), args.output))
        return EXIT_OK
    rows = [pod_row(o, args.all_namespaces) if kind == "Pod" else object_row(o, args.all_namespaces)
            for o in objects]
    header = pod_header(args.all_namespaces) if kind == "Pod" else object_header(args.all_namespaces)
    print_table([header, *rows])
    return EXIT_OK


def age(obj: Obj) -> str:
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return "?"
    then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def pod_header(all_namespaces: bool) -> list[str]:
    return (["NAMESPACE"] if all_namespaces else []) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"]


def pod_row(pod: Obj, all_namespaces: bool) -> list[str]:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    waiting = [c["state"]["waiting"]["reason"] for c in containers if "waiting" in c["state"]]
    phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else (waiting or [status.get("phase", "")])[0]
    row = [pod["metadata"]["name"], f"{sum(1 for c in containers if c['ready'])}/{len(pod['spec']['containers'])}",
           phase, str(sum(c["restartCount"] for c in containers)), age(pod), status.get("podIP") or "<none>"]
    return ([pod["metadata"]["namespace"]] if all_namespaces else []) + row


def object_header(all_namespaces: bool) -> list[str]:
    return (["NAMESPACE"] if all_namespaces else []) + ["NAME", "KIND", "AGE"]


def object_row(obj: Obj, all_namespaces: bool) -> list[str]:
    row = [obj["metadata"]["name"], obj["kind"], age(obj)]
    return ([obj["metadata"].get("namespace", "")] if all_namespaces else []) + row


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def manifest_command(args: argparse.Namespace) -> tuple[Settings, list[Obj], KubernetesCluster]:
    """What apply and delete share: the settings, the file's objects (read before anything changes), the cluster."""
    settings = settings_for(args)
    objects = read_manifest_file(args.filename)
    if not objects:
        source = "standard input" if args.filename == "-" else args.filename
        raise UsageError(f"{source} holds no Kubernetes object: give a YAML or JSON manifest with at least one "
                         "object (apiVersion, kind, metadata.name)")
    return settings, objects, local_cluster(settings)


def print_results(results: list[Obj]) -> None:
    for result in results:
        print(f"{result['object']} {result['action']}")


def cmd_apply(args: argparse.Namespace) -> int:
    settings, objects, cluster = manifest_command(args)
    try:
        cluster.admit_all(objects)  # a refused object changes nothing: every new one is checked before any is made
        results = cluster.apply(objects)
    except ClusterError as e:
        if e.status.get("code") in REFUSED_CODES:
            raise UsageError(str(e)) from None
        raise
    print_results(results)
    if not args.no_wait:
        wait_for_workloads(cluster, objects, settings)
        cluster.wait_converged(settings.timeouts.convergence)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    settings, objects, cluster = manifest_command(args)
    print_results(cluster.delete(objects))
    if not args.no_wait:
        for obj in objects:
            selector = workload_selector(obj)
            if selector is not None:
                cluster.wait_pods_gone(key_of(obj).namespace, settings.timeouts.pod_ready, selector)
        cluster.wait_converged(settings.timeouts.convergence)
    return EXIT_OK


def workload_selector(obj: Obj) -> dict[str, str] | None:
    if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
        return None
    labels = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    return dict(labels) or None


def wait_for_workloads(cluster: KubernetesCluster, objects: list[Obj], settings: Settings) -> None:
    for obj in objects:
        selector = workload_selector(obj)
        if selector is not None:
            cluster.wait_pods_ready(key_of(obj).namespace, settings.timeouts.pod_ready, selector,
                                    minimum=int((obj.get("spec") or {}).get("replicas", 1)))
        elif obj["kind"] == "Pod":
            name = obj["metadata"]["name"]

            def probe(name: str = name, namespace: str = key_of(obj).namespace) -> tuple[bool | None, str]:
                pod = cluster.get("Pod", name, namespace)
                return (True, "") if pod and pod_is_ready(pod) else (None, str((pod or {}).get("status")))

            wait_for(f"pod {name} ready", probe, settings.timeouts.pod_ready)


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.command
    if not command:
        raise UsageError("no command given: nginmesh local exec POD [-c CONTAINER] -- COMMAND [ARG…]")
    settings = settings_for(args)
    node = LocalNode(settings)
    pod = local_cluster(settings).get("Pod", args.pod, args.namespace)
    if pod is None:
        raise NotFoundError(f'pod "{args.pod}" not found in namespace "{args.namespace}"')
    argv, env = node.exec_argv(pod, command, args.container)
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


def cmd_logs(args: argparse.Namespace) -> int:
    cluster = local_cluster(settings_for(args))
    sys.stdout.write(cluster.logs(args.namespace, args.pod, args.container, args.previous))
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    cluster = local_cluster(settings_for(args))
    rows = [["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]]
    for event in cluster.events(args.namespace):
        involved = event["involvedObject"]
        rows.append([event["lastTimestamp"], event["type"], event["reason"],
                     f"{str(involved['kind']).lower()}/{involved['name']}", event["message"]])
    print_table(rows)
    return EXIT_OK


def cmd_url(args: argparse.Namespace) -> int:
    service, _, port = args.target.partition(":")
    if not service or not port.isdigit():
        raise UsageError(f"bad target {args.target!r}: give SERVICE:PORT, e.g. productpage:9080")
    print(local_cluster(settings_for(args)).service_url(args.namespace, service, int(port)))
    return EXIT_OK


def cmd_ingress_url(args: argparse.Namespace) -> int:
    print(local_cluster(settings_for(args)).ingress_url())
    return EXIT_OK


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    if not lifecycle.is_running(settings):
        raise NotFoundError(f"no local cluster named {settings.cluster_name!r} is running: start one with "
                            f"'nginmesh local up --name {settings.cluster_name}'")
    sys.stdout.write(LocalNode(settings).kubeconfig.read_text())
    return EXIT_OK


def read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise UsageError(f"{path}: no such file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot be read ({e.__class__.__name__})") from e


def cmd_check_pod(args: argparse.Namespace) -> int:
    expect = SidecarExpectations(proxy_port=args.proxy_port, proxy_uid=args.proxy_uid,
                                 proxy_image=args.proxy_image, init_image=args.init_image)
    if args.profile is not None:
        expect = replace(SidecarExpectations.for_profile(get_profile(args.profile), args.proxy_image,
                                                         args.init_image),
                         proxy_port=args.proxy_port, proxy_uid=args.proxy_uid)
    pods: list[Obj] = []
    context: list[Obj] = []
    for path in args.files:
        for obj in parse_manifests(read_text(path), "<stdin>" if path == "-" else path):
            if obj["kind"] in POD_CONTEXT_KINDS:
                context.append(obj)
            elif obj["kind"] != "Pod":
                raise UsageError(f"{path}: {obj['kind']} {obj['metadata']['name']} is not a Pod, a workload or a "
                                 "Namespace; give Pods or a List of them (kubectl get deploy,pods -o yaml)")
            else:
                pods.append(obj)
    if not pods:
        raise UsageError("no pods found in the input: give Pods or a List of Pods (kubectl get pods -o yaml)")
    results = [subject_result(subject_of(pod), check_pod(pod, expect, owning_workload(pod, context),
                                                         namespace_object(pod, context))) for pod in pods]
    sys.stdout.write(render_results(results, args.output))
    return EXIT_OK if all(r["conformant"] for r in results) else EXIT_FAILED


def cmd_check_rules(args: argparse.Namespace) -> int:
    objects = [obj for path in args.files for obj in parse_manifests(read_text(path), "<stdin>" if path == "-"
                                                                     else path)]
    if not any(obj["kind"] == "RouteRule" for obj in objects):
        raise UsageError("no RouteRule found in the input: give the rule files you apply")
    workloads = None if args.workloads is None else [
        obj for path in args.workloads for obj in parse_manifests(read_text(path), "<stdin>" if path == "-"
                                                                   else path)]
    analysis = analyze(objects, workloads)
    sys.stdout.write(analysis.render(args.output))
    return EXIT_FAILED if analysis.errors else EXIT_OK


def cmd_check_iptables(args: argparse.Namespace) -> int:
    ranges = tuple(r.strip() for r in args.include_ranges.split(",") if r.strip())
    for cidr in (*ranges, f"{args.pod_ip}/32"):
        try:
            ipaddress.IPv4Network(cidr, strict=False)
        except ValueError as e:
            raise UsageError(f"bad address or range {cidr!r}: give IPv4 CIDRs such as 10.0.0.0/8") from e
    expect = CaptureExpectations(args.proxy_port, args.proxy_uid, ranges, args.pod_ip)
    subject = "<stdin>" if args.file == "-" else args.file
    findings, probes = check_rules(read_text(args.file), expect, subject)
    sys.stdout.write(render_results([subject_result(subject, findings, probes)], args.output))
    return EXIT_OK if not findings else EXIT_FAILED


SUITES_PACKAGE = "pytest_nginmesh.suites"


def run_conformance(pytest_args: list[str]) -> int:
    """``nginmesh conformance [PYTEST ARGS…]``: the packaged suites, from any directory; pytest's exit status."""
    import pytest

    targets = [] if any(a.startswith(SUITES_PACKAGE) for a in pytest_args) else [SUITES_PACKAGE]
    return int(pytest.main(["--pyargs", *targets, *pytest_args]))


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["conformance"]:
        return run_conformance(words[1:])
    head, command = (words[: words.index("--")], words[words.index("--") + 1:]) if "--" in words else (words, [])
    args = build_parser().parse_args(head)
    args.command = command
    try:
        return int(args.handler(args))
    except UsageError as e:
        print(f"nginmesh: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ClusterError as e:
        print(f"nginmesh: error: {e}", file=sys.stderr)
        return EXIT_USAGE if e.status.get("reason") in ("Invalid", "RequestEntityTooLarge") else EXIT_FAILED
    except NginmeshError as e:
        print(f"nginmesh: error: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, PreflightError) else EXIT_FAILED
    except OSError as e:
        print(f"nginmesh: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as e:
        print("nginmesh: interrupted" + (" (SIGTERM)" if isinstance(e, Terminated) else ""), file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
