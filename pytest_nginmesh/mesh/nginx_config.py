"""Render the NGINX configuration of a sidecar or the ingress from Pilot's mesh snapshot (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..profiles import ISTIO_RENDERING, SIDECAR_REDIRECT, RouteRendering
from ..routerules import DEFAULT_TIMEOUT
from .nginx_routes import (
    CONNECT_TIMEOUT,
    UNAVAILABLE,
    UNAVAILABLE_PORT,
    Identity,
    RouteRenderer,
    Target,
    applicable_rules,
    parse_rules,
    proxy_headers,
    quote,
    report_format,
    report_log,
    service_fqdn,
)

Snapshot = dict[str, Any]
PROXY_PORT = 15001


@dataclass(frozen=True)
class Proxy:
    """Who the proxy is: its mode, pod, address, and where its files go."""

    mode: str  # "sidecar" or "ingress"
    pod_name: str
    namespace: str
    pod_ip: str
    directory: Path
    ingress_port: int = 80
    run_as_root: bool = False
    service_cluster: str = "istio-proxy"
    report_to: str | None = None
    route_rendering: RouteRendering = ISTIO_RENDERING  # the release's (the agent reads it at start)
    redirect_status: int = SIDECAR_REDIRECT


def upstream_name(namespace: str, service: str, port: int) -> str:
    # '_' never occurs in Kubernetes names, so '__' keeps namespace, name and port apart after '-' → '_'.
    return "__".join(("svc", namespace, service, str(port))).replace("-", "_").replace(".", "_")


# The port-name prefixes Pilot gives an HTTP listener (istio/pilot platform/kube/conversion.go, convertProtocol, Istio
# 0.2/0.3: the name up to its first '-'; http2 and grpc are HTTP/2): every other TCP port is a TCP service.
HTTP_PORT_PREFIXES = frozenset({"http", "http2", "grpc"})
CLOSED = "closed"  # the outbound target of a TCP service an agent renders no proxy for


def http_port(port: Snapshot) -> bool:
    """Whether Pilot serves the service port as HTTP (by its name), not as plain TCP."""
    return str(port.get("name") or "").split("-", 1)[0] in HTTP_PORT_PREFIXES


def host_pattern(service: str, namespace: str, port: int, local: bool, only_port: bool) -> str:
    """A case-insensitive regex for every Host header a client may send for the service port.

    The port may be left out for port 80, and for a service with one port: the proxy cannot
    tell the original destination port, so a bare name is unambiguous only then.
    """
    names = rf"{re.escape(service)}\.{re.escape(namespace)}(\.svc(\.cluster\.local)?)?"
    if local:
        names = rf"{re.escape(service)}(\.{re.escape(namespace)}(\.svc(\.cluster\.local)?)?)?"
    optional_port = "?" if port == 80 or only_port else ""
    return f"~*^{names}(:{port}){optional_port}$"


def render(snapshot: Snapshot, proxy: Proxy) -> str:
    d = proxy.directory
    identity = Identity(proxy.service_cluster, own_labels(snapshot, proxy), own_service(snapshot, proxy),
                        proxy.report_to)
    routes = RouteRenderer(identity, proxy.route_rendering, proxy.redirect_status)
    targets = list(_targets(snapshot))
    rules = parse_rules(snapshot.get("routeRules", []))
    for target in targets:
        if target.instances:
            routes.upstream(target.key, [(ip, port) for ip, port, _ in target.instances])
            routes.service(target, applicable_rules(rules, target, identity))
    lines = [
        "# rendered by the nginmesh agent; version " + str(snapshot.get("version", "")),
        "worker_processes 1;",
        f"pid {d}/nginx.pid;",
    ]
    if proxy.run_as_root:
        lines.append("user root;")
    lines += [
        "events { worker_connections 1024; }",
        "http {",
        f"  client_body_temp_path {d}/tmp/body;",
        f"  proxy_temp_path {d}/tmp/proxy;",
        f"  fastcgi_temp_path {d}/tmp/fastcgi;",
        f"  uwsgi_temp_path {d}/tmp/uwsgi;",
        f"  scgi_temp_path {d}/tmp/scgi;",
        "  log_format nginmesh 'nginx: $time_iso8601 $nginmesh_direction $remote_addr \"$request\" $status "
        "$body_bytes_sent $request_time host=$http_host upstream=$upstream_addr rid=$nginmesh_request_id';",
        "  access_log /dev/stdout nginmesh;",
        # Rule variables and host maps have long names and many entries; the defaults (64) are too small.
        "  variables_hash_bucket_size 256;",
        "  variables_hash_max_size 4096;",
        "  map_hash_bucket_size 256;",
        "  proxy_http_version 1.1;",
        *("  " + line for line in proxy_headers(identity)),
        f"  proxy_connect_timeout {CONNECT_TIMEOUT};",
        # Istio's default request timeout; an agent that renders no timeout leaves NGINX's own (60 s).
        *([f"  proxy_read_timeout {DEFAULT_TIMEOUT:g}s;"] if proxy.route_rendering.request_timeout else []),
        "  proxy_next_upstream off;",
        "  map $http_x_request_id $nginmesh_request_id { \"\" $request_id; default $http_x_request_id; }",
        "  map $http_x_nginmesh_source_service $nginmesh_source_service "
        "{ \"\" unknown; default $http_x_nginmesh_source_service; }",
        "  map $http_x_nginmesh_source_version $nginmesh_source_version "
        "{ \"\" unknown; default $http_x_nginmesh_source_version; }",
        f"  upstream {UNAVAILABLE} {{ server 127.0.0.1:{UNAVAILABLE_PORT}; }}",
        "  server {",
        f"    listen 127.0.0.1:{UNAVAILABLE_PORT};",
        "    access_log off;",
        '    location / { return 503 "no healthy upstream\\n"; }',
        "  }",
        *routes.http,
    ]
    if proxy.mode == "ingress":
        lines += _ingress_server(snapshot, proxy, routes.locations)
    else:
        lines += _inbound_server(snapshot, proxy, identity)
        lines += _outbound_server(snapshot, proxy, routes.locations)
    lines.append("}")
    return "\n".join(lines) + "\n"


def own_labels(snapshot: Snapshot, proxy: Proxy) -> tuple[tuple[str, str], ...]:
    for service in snapshot.get("services", []):
        for instance in service["instances"]:
            if instance["pod"] == proxy.pod_name and service["namespace"] == proxy.namespace:
                return tuple(sorted(instance["labels"].items()))
    return ()


def _targets(snapshot: Snapshot) -> list[Target]:
    targets = []
    for service in snapshot.get("services", []):
        for port in service["ports"]:
            if port.get("protocol", "TCP") != "TCP":
                continue
            instances = tuple((i["ip"], int(i["ports"].get(port["name"], port["port"])),
                               tuple(sorted(i["labels"].items()))) for i in service["instances"])
            targets.append(Target(upstream_name(service["namespace"], service["name"], port["port"]),
                                  service["namespace"], service["name"], int(port["port"]), instances))
    return targets


def _has_instances(service: Snapshot) -> bool:
    return bool(service["instances"])


def own_service(snapshot: Snapshot, proxy: Proxy) -> str:
    """The FQDN of the first service (in the proxy's namespace) this pod serves, as Mixer names it."""
    for service in snapshot.get("services", []):
        if service["namespace"] == proxy.namespace and any(i["pod"] == proxy.pod_name for i in service["instances"]):
            return service_fqdn(service["name"], service["namespace"])
    return "unknown"


def _inbound_server(snapshot: Snapshot, proxy: Proxy, identity: Identity) -> list[str]:
    app_port = None
    for service in snapshot.get("services", []):
        for instance in service["instances"]:
            if instance["pod"] == proxy.pod_name and service["namespace"] == proxy.namespace:
                app_port = app_port or next(iter(instance["ports"].values()), None)
    target = f"proxy_pass http://127.0.0.1:{app_port};" if app_port else 'return 503 "no inbound service\\n";'
    return [
        # Each request is reported once, by the destination's proxy, as Nginmesh's mixer module does.
        report_format("nginmesh_report", identity.service_fqdn, identity.version),
        "  server {",
        f"    listen {proxy.pod_ip}:{PROXY_PORT};",
        "    set $nginmesh_direction inbound;",
        "    access_log /dev/stdout nginmesh;",
        *("    " + line for line in report_log(identity, "nginmesh_report")),
        f"    location / {{ {target} }}",
        "  }",
    ]


def _outbound_server(snapshot: Snapshot, proxy: Proxy, locations: list[str]) -> list[str]:
    lines = ["  map $http_host $nginmesh_upstream {", '    default "";']
    for service in snapshot.get("services", []):
        local = service["namespace"] == proxy.namespace
        tcp_ports = [p for p in service["ports"] if p.get("protocol", "TCP") == "TCP"]
        for port in tcp_ports:
            pattern = host_pattern(service["name"], service["namespace"], port["port"], local, len(tcp_ports) == 1)
            target = (CLOSED if not (proxy.route_rendering.tcp_services or http_port(port)) else
                      upstream_name(service["namespace"], service["name"], port["port"]) if _has_instances(service)
                      else "unavailable")
            lines.append(f'    "{pattern}" {target};')
    lines += [
        "  }",
        "  server {",
        f"    listen 127.0.0.1:{PROXY_PORT} default_server;",
        "    set $nginmesh_direction outbound;",
        "    location / {",
        '      if ($nginmesh_upstream = "") { return 404 "no route to $http_host\\n"; }',
        '      if ($nginmesh_upstream = unavailable) { return 503 "no healthy upstream\\n"; }',
        f"      if ($nginmesh_upstream = {CLOSED}) {{ return 444; }}",
        "      rewrite ^ /.nginmesh/$nginmesh_upstream last;",
        "    }",
        *locations,
        "  }",
    ]
    return lines


def _backend_port(service: Snapshot | None, backend: Snapshot) -> int | None:
    """The service port an Ingress backend names (by number or name), if it has instances to serve it."""
    if service is None or not _has_instances(service):
        return None
    wanted = backend.get("servicePort", service["ports"][0]["port"] if service["ports"] else None)
    for port in service["ports"]:
        if wanted in (port["port"], str(port["port"]), port.get("name")):
            return int(port["port"])
    return None


def _ingress_server(snapshot: Snapshot, proxy: Proxy, service_locations: list[str]) -> list[str]:
    """One server for the Ingress rules without a host (the default server) and one per host named: Istio's
    ingress matches a rule's host exactly on the request's authority (istio/pilot
    platform/kube/ingress/conversion.go, createIngressRule; proxy/envoy/ingress.go groups the rules by host,
    "*" for none)."""
    services = {(s["namespace"], s["name"]): s for s in snapshot.get("services", [])}
    locations: dict[str, list[str]] = {"": []}
    catch_alls: dict[str, str] = {}
    for ingress in snapshot.get("ingresses", []):
        annotations = ingress["metadata"].get("annotations") or {}
        if annotations.get("kubernetes.io/ingress.class", "istio") != "istio":
            continue
        namespace = ingress["metadata"].get("namespace", "default")
        for rule in ingress.get("spec", {}).get("rules") or []:
            host = str(rule.get("host") or "").lower()  # host names match case-insensitively
            for path in (rule.get("http") or {}).get("paths") or []:
                backend = path.get("backend") or {}
                port = _backend_port(services.get((namespace, backend.get("serviceName"))), backend)
                if port is None:
                    target = 'return 503 "no healthy upstream\\n";'
                else:
                    key = upstream_name(namespace, backend["serviceName"], port)
                    target = f"rewrite ^ /.nginmesh/{key} last;"
                raw = path.get("path", "/")
                if raw == "/.*":  # Istio 0.3.0's bookinfo.yaml (samples/bookinfo/kube): everything, in place of the 404
                    catch_alls[host] = target
                elif raw.endswith(".*"):
                    locations.setdefault(host, []).append(f"    location {raw[:-2]} {{ {target} }}")
                else:
                    locations.setdefault(host, []).append(f"    location = {raw} {{ {target} }}")
    lines = []
    for host in sorted(locations.keys() | catch_alls.keys()):
        catch_all = catch_alls.get(host, 'return 404 "no ingress rule for $uri\\n";')
        lines += [
            "  server {",
            f"    listen {proxy.ingress_port}{' default_server' if not host else ''};",
            *([f"    server_name {quote(host)};"] if host else []),
            "    set $nginmesh_direction ingress;",
            *sorted(set(locations.get(host, []))),
            f"    location / {{ {catch_all} }}",
            *service_locations,
            "  }",
        ]
    return lines
