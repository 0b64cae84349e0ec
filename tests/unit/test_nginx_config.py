"""The NGINX configuration of sidecars and the ingress (pytest_nginmesh.mesh.nginx_config), checked with nginx -t.

``nginx -t`` binds every ``listen`` address (only "address in use" is tolerated), so the sidecar's
``listen <pod ip>:15001`` only passes where the pod IP exists. The checks therefore run in a
throwaway network namespace holding the pod IP, as the agent's ``nginx -t`` runs in the pod's.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_nginmesh.kube import Obj, read_manifest_file
from pytest_nginmesh.mesh.nginx_config import Proxy, Snapshot, http_port, render, upstream_name
from pytest_nginmesh.profiles import NGINMESH_RENDERING

REPO = Path(__file__).resolve().parents[2]
BOOKINFO_MANIFEST = REPO / "fixtures" / "bookinfo" / "bookinfo.yaml"
POD_IP = "10.213.0.5"
POD_NAME = "reviews-v1-7f9c5b6d4-abcde"
MAP_ENTRY = re.compile(r'^\s*"(~[^"]+)" (\S+);$')
TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def service(name: str, namespace: str, port: int, instances: list[tuple[str, str, int]],
            port_name: str = "http", protocol: str = "TCP") -> Obj:
    """A service as pytest_nginmesh.mesh.snapshot.build_snapshot lists it; instances are (ip, pod, target port)."""
    return {
        "name": name, "namespace": namespace, "clusterIP": "10.214.0.99",
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
        "instances": [{"ip": ip, "pod": pod, "labels": {}, "ports": {port_name: target}}
                      for ip, pod, target in instances],
    }


def ingress_entry(ingress: Obj) -> Obj:
    """An Ingress as the snapshot carries it: kind, the identifying metadata, and the spec."""
    meta = ingress["metadata"]
    return {"kind": "Ingress",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default"),
                         "annotations": meta.get("annotations") or {}},
            "spec": ingress["spec"]}


@pytest.fixture
def gateway() -> Obj:
    (found,) = [o for o in read_manifest_file(str(BOOKINFO_MANIFEST)) if o["kind"] == "Ingress"]
    return ingress_entry(found)


@pytest.fixture
def snapshot(gateway: Obj) -> Snapshot:
    return {
        "version": "0123456789ab",
        "services": [
            service("productpage", "default", 9080, [("10.213.0.2", "productpage-v1-aaaaa", 9080)]),
            service("reviews", "default", 9080, [(POD_IP, POD_NAME, 9080), ("10.213.0.6", "reviews-v2-bbbbb", 9080)]),
            service("ratings", "default", 9080, []),
            service("istio-pilot", "istio-system", 15003, [("10.213.0.9", "istio-pilot-ccccc", 15003)],
                    port_name="http-discovery"),
            service("istio-mixer", "istio-system", 9125, [("10.213.0.10", "istio-mixer-ddddd", 9125)],
                    port_name="statsd", protocol="UDP"),
            service("web", "shop", 80, [("10.213.0.11", "web-eeeee", 8080)]),
        ],
        "routeRules": [],
        "ingresses": [gateway],
    }


@pytest.fixture
def proxy_dir(tmp_path: Path) -> Path:
    """The proxy's directory with the temp folders the agent creates before rendering."""
    for sub in TEMP_DIRS:
        (tmp_path / "tmp" / sub).mkdir(parents=True)
    return tmp_path


def sidecar(directory: Path, pod_name: str = POD_NAME) -> Proxy:
    return Proxy(mode="sidecar", pod_name=pod_name, namespace="default", pod_ip=POD_IP, directory=directory,
                 run_as_root=os.geteuid() == 0)


def ingress(directory: Path) -> Proxy:
    return Proxy(mode="ingress", pod_name="istio-ingress-fffff", namespace="istio-system", pod_ip="10.213.0.3",
                 directory=directory, run_as_root=os.geteuid() == 0)


def block(conf: str, opening: str) -> list[str]:
    """The lines of the ``{ ... }`` block that starts with the line ``opening``, by brace counting."""
    lines = conf.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == opening)
    depth, body = 0, []
    for line in lines[start:]:
        depth += line.count("{") - line.count("}")
        body.append(line.strip())
        if depth == 0:
            return body
    raise AssertionError(f"block {opening!r} is not closed")


def server_block(conf: str, direction: str) -> list[str]:
    lines = conf.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "server {"]
    for start in starts:
        body = block("\n".join(lines[start:]), "server {")
        if f"set $nginmesh_direction {direction};" in body:
            return body
    raise AssertionError(f"no {direction} server")


def outbound_map(conf: str) -> list[tuple[re.Pattern[str], str]]:
    """The regex entries of the Host map, compiled with Python's re (``~*`` means case-insensitive)."""
    entries = []
    for line in block(conf, "map $http_host $nginmesh_upstream {"):
        match = MAP_ENTRY.match(line)
        if match:
            pattern = match.group(1)
            assert pattern.startswith("~*"), pattern
            entries.append((re.compile(pattern[2:], re.IGNORECASE), match.group(2)))
    return entries


def route(conf: str, host: str) -> str | None:
    """The map's value for a Host header: nginx tries the regexes in order and the first match wins."""
    return next((target for pattern, target in outbound_map(conf) if pattern.search(host)), None)


def used_upstreams(conf: str) -> set[str]:
    """Upstream names in proxy_pass directives, internal rewrites and the outbound map's values."""
    return (set(re.findall(r"proxy_pass http://(svc_\w+?)(?:\$request_uri)?;", conf))
            | set(re.findall(r"rewrite \^ /\.nginmesh/(svc_\w+) last;", conf))
            | set(re.findall(r'" (svc_\w+);$', conf, re.M)))


def undefined_upstreams(conf: str) -> set[str]:
    """Upstreams used without an ``upstream`` block: nginx would try to resolve them as host names."""
    return used_upstreams(conf) - set(re.findall(r"^\s*upstream (\S+) \{$", conf, re.MULTILINE))


def write(proxy: Proxy, snapshot: Snapshot) -> Path:
    path = proxy.directory / "nginx.conf"
    path.write_text(render(snapshot, proxy))
    return path


def nginx_test(netns: str, config: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, "nginx", "-t", "-c", str(config),
                           "-e", str(directory / "error.log")], capture_output=True, text=True, timeout=30)


@pytest.fixture
def pod_netns(make_netns: Callable[[], str]) -> Callable[[str | None], str]:
    """A namespace with loopback up and, when given, the pod IP on it."""

    def make(address: str | None) -> str:
        netns = make_netns()
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True, timeout=10)
        if address:
            subprocess.run(["ip", "-n", netns, "addr", "add", f"{address}/32", "dev", "lo"], check=True, timeout=10)
        return netns

    return make


# -- nginx -t --------------------------------------------------------------------------------------


@needs_nginx
def test_sidecar_config_passes_nginx_t(
    snapshot: Snapshot, proxy_dir: Path, pod_netns: Callable[[str | None], str]
) -> None:
    config = write(sidecar(proxy_dir), snapshot)
    result = nginx_test(pod_netns(POD_IP), config, proxy_dir)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@needs_nginx
def test_a_release_sidecar_config_with_a_tcp_service_passes_nginx_t(
    snapshot: Snapshot, proxy_dir: Path, pod_netns: Callable[[str | None], str]
) -> None:
    config = write(dataclasses.replace(sidecar(proxy_dir), route_rendering=NGINMESH_RENDERING),
                   with_mongodb(snapshot))
    result = nginx_test(pod_netns(POD_IP), config, proxy_dir)
    assert result.returncode == 0, result.stderr


@needs_nginx
def test_ingress_config_passes_nginx_t(
    snapshot: Snapshot, proxy_dir: Path, pod_netns: Callable[[str | None], str]
) -> None:
    config = write(ingress(proxy_dir), snapshot)
    result = nginx_test(pod_netns(None), config, proxy_dir)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@needs_nginx
def test_nginx_t_binds_so_the_pod_ip_must_exist(
    snapshot: Snapshot, proxy_dir: Path, pod_netns: Callable[[str | None], str]
) -> None:
    """The assumption "nginx -t does not bind, any IP is fine" is wrong: it fails on an absent address."""
    config = write(sidecar(proxy_dir), snapshot)
    result = nginx_test(pod_netns(None), config, proxy_dir)
    assert result.returncode != 0
    assert f"bind() to {POD_IP}:15001 failed" in result.stderr


# -- the sidecar -----------------------------------------------------------------------------------


def test_inbound_server_listens_on_the_pod_ip_and_proxies_to_the_app_port(
    snapshot: Snapshot, proxy_dir: Path
) -> None:
    inbound = server_block(render(snapshot, sidecar(proxy_dir)), "inbound")
    assert f"listen {POD_IP}:15001;" in inbound
    assert "location / { proxy_pass http://127.0.0.1:9080; }" in inbound


def test_inbound_server_of_a_pod_outside_every_service_answers_503(snapshot: Snapshot, proxy_dir: Path) -> None:
    inbound = server_block(render(snapshot, sidecar(proxy_dir, pod_name="loner")), "inbound")
    assert not any("proxy_pass" in line for line in inbound)
    assert any("return 503" in line for line in inbound)


def test_outbound_server_listens_on_loopback(snapshot: Snapshot, proxy_dir: Path) -> None:
    outbound = server_block(render(snapshot, sidecar(proxy_dir)), "outbound")
    assert "listen 127.0.0.1:15001 default_server;" in outbound
    assert "rewrite ^ /.nginmesh/$nginmesh_upstream last;" in outbound
    assert "proxy_pass http://svc__default__reviews__9080$request_uri;" in outbound


def test_outbound_map_defaults_to_no_route(snapshot: Snapshot, proxy_dir: Path) -> None:
    assert 'default "";' in block(render(snapshot, sidecar(proxy_dir)), "map $http_host $nginmesh_upstream {")


@pytest.mark.parametrize(
    "host",
    ["reviews:9080", "reviews.default:9080", "reviews.default.svc:9080", "reviews.default.svc.cluster.local:9080"],
)
def test_outbound_map_routes_names_of_a_local_service(snapshot: Snapshot, proxy_dir: Path, host: str) -> None:
    assert route(render(snapshot, sidecar(proxy_dir)), host) == "svc__default__reviews__9080"


def test_outbound_map_routes_the_bare_service_name(snapshot: Snapshot, proxy_dir: Path) -> None:
    assert route(render(snapshot, sidecar(proxy_dir)), "reviews") == "svc__default__reviews__9080"


@pytest.mark.parametrize(
    "host",
    ["reviews:9081", "reviewsx", "reviewsx:9080", "xreviews:9080", "reviews.default.svc.cluster.local.evil:9080",
     "reviews.other:9080", "reviews:90800"],
)
def test_outbound_map_rejects_other_hosts(snapshot: Snapshot, proxy_dir: Path, host: str) -> None:
    assert route(render(snapshot, sidecar(proxy_dir)), host) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("istio-pilot.istio-system:15003", "svc__istio_system__istio_pilot__15003"),
        ("istio-pilot.istio-system.svc:15003", "svc__istio_system__istio_pilot__15003"),
        ("istio-pilot.istio-system.svc.cluster.local:15003", "svc__istio_system__istio_pilot__15003"),
        ("istio-pilot:15003", None),
        ("istio-pilot", None),
    ],
)
def test_other_namespace_services_match_only_qualified_names(
    snapshot: Snapshot, proxy_dir: Path, host: str, expected: str | None
) -> None:
    assert route(render(snapshot, sidecar(proxy_dir)), host) == expected


@pytest.mark.parametrize(("host", "expected"), [("web.shop", "svc__shop__web__80"),
                                                ("web.shop:80", "svc__shop__web__80"),
                                                ("web.shop:8080", None), ("web", None)])
def test_port_80_matches_with_or_without_the_port(
    snapshot: Snapshot, proxy_dir: Path, host: str, expected: str | None
) -> None:
    assert route(render(snapshot, sidecar(proxy_dir)), host) == expected


def test_service_without_instances_maps_to_unavailable(snapshot: Snapshot, proxy_dir: Path) -> None:
    conf = render(snapshot, sidecar(proxy_dir))
    assert route(conf, "ratings:9080") == "unavailable"
    assert "upstream svc__default__ratings__9080 {" not in conf


def test_udp_ports_get_no_route(snapshot: Snapshot, proxy_dir: Path) -> None:
    assert route(render(snapshot, sidecar(proxy_dir)), "istio-mixer.istio-system:9125") is None


def test_upstream_lists_every_instance_at_its_target_port(snapshot: Snapshot, proxy_dir: Path) -> None:
    conf = render(snapshot, sidecar(proxy_dir))
    assert block(conf, "upstream svc__default__reviews__9080 {")[1:-1] == [
        f"server {POD_IP}:9080 max_fails=0;", "server 10.213.0.6:9080 max_fails=0;"]
    assert block(conf, "upstream svc__shop__web__80 {")[1:-1] == ["server 10.213.0.11:8080 max_fails=0;"]


def test_runtime_files_live_in_the_proxy_directory(snapshot: Snapshot, proxy_dir: Path) -> None:
    conf = render(snapshot, sidecar(proxy_dir))
    assert f"pid {proxy_dir}/nginx.pid;" in conf
    assert "access_log /dev/stdout nginmesh;" in conf, "access lines go to the container log"
    for sub in TEMP_DIRS:
        assert f"{proxy_dir}/tmp/{sub};" in conf


# -- the ingress -----------------------------------------------------------------------------------


def test_ingress_exact_paths_become_exact_locations(snapshot: Snapshot, proxy_dir: Path) -> None:
    server = server_block(render(snapshot, ingress(proxy_dir)), "ingress")
    for path in ("/productpage", "/login", "/logout", "/api/v1/products"):
        assert f"location = {path} {{ rewrite ^ /.nginmesh/svc__default__productpage__9080 last; }}" in server


def test_ingress_wildcard_path_becomes_a_prefix_location(snapshot: Snapshot, proxy_dir: Path) -> None:
    server = server_block(render(snapshot, ingress(proxy_dir)), "ingress")
    assert "location /api/v1/products/ { rewrite ^ /.nginmesh/svc__default__productpage__9080 last; }" in server
    assert not any(".*" in line for line in server)


def test_ingress_listens_on_its_port_with_a_404_fallback(snapshot: Snapshot, proxy_dir: Path) -> None:
    server = server_block(render(snapshot, ingress(proxy_dir)), "ingress")
    assert "listen 80 default_server;" in server
    assert any(line.startswith("location / { return 404") for line in server)


def test_ingress_of_another_class_is_ignored(snapshot: Snapshot, gateway: Obj, proxy_dir: Path) -> None:
    other = copy.deepcopy(gateway)
    other["metadata"]["name"] = "nginx-gateway"
    other["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
    other["spec"]["rules"][0]["http"]["paths"] = [{"path": "/elsewhere",
                                                   "backend": {"serviceName": "productpage", "servicePort": 9080}}]
    snapshot["ingresses"].append(other)
    assert "/elsewhere" not in render(snapshot, ingress(proxy_dir))


def test_ingress_backend_without_instances_answers_503(snapshot: Snapshot, gateway: Obj, proxy_dir: Path) -> None:
    gateway["spec"]["rules"][0]["http"]["paths"] = [{"path": "/ratings",
                                                     "backend": {"serviceName": "ratings", "servicePort": 9080}}]
    server = server_block(render(snapshot, ingress(proxy_dir)), "ingress")
    assert 'location = /ratings { return 503 "no healthy upstream\\n"; }' in server


def test_ingress_backend_with_a_named_port(snapshot: Snapshot, gateway: Obj, proxy_dir: Path) -> None:
    gateway["spec"]["rules"][0]["http"]["paths"] = [{"path": "/productpage",
                                                     "backend": {"serviceName": "productpage", "servicePort": "http"}}]
    server = server_block(render(snapshot, ingress(proxy_dir)), "ingress")
    assert "location = /productpage { rewrite ^ /.nginmesh/svc__default__productpage__9080 last; }" in server


@pytest.mark.parametrize("make_proxy", [sidecar, ingress], ids=["sidecar", "ingress"])
def test_every_proxy_pass_names_a_defined_upstream(
    snapshot: Snapshot, proxy_dir: Path, make_proxy: Callable[[Path], Proxy]
) -> None:
    conf = render(snapshot, make_proxy(proxy_dir))
    assert used_upstreams(conf)
    assert undefined_upstreams(conf) == set()


def test_ingress_backend_with_an_unknown_port_does_not_name_a_missing_upstream(
    snapshot: Snapshot, gateway: Obj, proxy_dir: Path
) -> None:
    gateway["spec"]["rules"][0]["http"]["paths"] = [{"path": "/productpage",
                                                     "backend": {"serviceName": "productpage", "servicePort": 9999}}]
    assert undefined_upstreams(render(snapshot, ingress(proxy_dir))) == set()


def catch_all_gateway(gateway: Obj) -> Obj:
    """Istio 0.3.0's Bookinfo Ingress: one path, /.*, to productpage."""
    rule = {"http": {"paths": [{"path": "/.*", "backend": {"serviceName": "productpage", "servicePort": 9080}}]}}
    return {**gateway, "spec": {"rules": [rule]}}


def test_ingress_path_dot_star_replaces_the_404_location(snapshot: Snapshot, gateway: Obj, proxy_dir: Path) -> None:
    snapshot["ingresses"] = [catch_all_gateway(gateway)]
    config = write(ingress(proxy_dir), snapshot).read_text(encoding="utf-8")
    assert f"    location / {{ rewrite ^ /.nginmesh/{upstream_name('default', 'productpage', 9080)} last; }}" in config
    assert "no ingress rule" not in config


def hosted_copy(gateway: Obj, namespace: str, host: str) -> Obj:
    """The Bookinfo Ingress in another namespace, its rules for one host only."""
    copied = copy.deepcopy(gateway)
    copied["metadata"]["namespace"] = namespace
    for rule in copied["spec"]["rules"]:
        rule["host"] = host
    return copied


def test_ingress_rules_with_a_host_get_a_server_of_their_own(snapshot: Snapshot, gateway: Obj,
                                                             proxy_dir: Path) -> None:
    snapshot["services"].append(service("productpage", "copy", 9080, [("10.213.0.12", "productpage-v1-fffff", 9080)]))
    snapshot["ingresses"].append(hosted_copy(gateway, "copy", "copy.nginmesh.test"))
    lines = render(snapshot, ingress(proxy_dir)).splitlines()
    bodies = [block("\n".join(lines[i:]), "server {") for i, line in enumerate(lines) if line.strip() == "server {"]
    servers = [body for body in bodies if "set $nginmesh_direction ingress;" in body]
    hosted = [body for body in servers if 'server_name "copy.nginmesh.test";' in body]
    default = [body for body in servers if "listen 80 default_server;" in body]
    assert len(hosted) == 1 and len(default) == 1 and len(servers) == 2
    own = f"location = /productpage {{ rewrite ^ /.nginmesh/{upstream_name('copy', 'productpage', 9080)} last; }}"
    assert own in hosted[0] and own not in default[0]
    assert "location = /productpage { rewrite ^ /.nginmesh/svc__default__productpage__9080 last; }" in default[0]
    assert any(line.startswith("location / { return 404") for line in hosted[0])


def test_a_host_whose_only_path_is_dot_star_gets_a_server_of_its_own(snapshot: Snapshot, gateway: Obj,
                                                                    proxy_dir: Path) -> None:
    # Istio 0.3.0's Bookinfo Ingress has the one path /.*: a copy of it for a host must still be served for it.
    snapshot["ingresses"].append(hosted_copy(catch_all_gateway(gateway), "default", "B.nginmesh.test"))
    lines = render(snapshot, ingress(proxy_dir)).splitlines()
    bodies = [block("\n".join(lines[i:]), "server {") for i, line in enumerate(lines) if line.strip() == "server {"]
    (hosted,) = [body for body in bodies if 'server_name "b.nginmesh.test";' in body]
    assert f"location / {{ rewrite ^ /.nginmesh/{upstream_name('default', 'productpage', 9080)} last; }}" in hosted


@needs_nginx
def test_ingress_with_hosted_rules_passes_nginx_t(snapshot: Snapshot, gateway: Obj, proxy_dir: Path,
                                                  pod_netns: Callable[[str | None], str]) -> None:
    snapshot["ingresses"] += [hosted_copy(gateway, "default", "a.nginmesh.test"),
                              hosted_copy(catch_all_gateway(gateway), "default", "b.nginmesh.test")]
    result = nginx_test(pod_netns(None), write(ingress(proxy_dir), snapshot), proxy_dir)
    assert result.returncode == 0, result.stderr


@needs_nginx
def test_ingress_with_a_dot_star_path_passes_nginx_t(snapshot: Snapshot, gateway: Obj, proxy_dir: Path,
                                                     pod_netns: Callable[[str | None], str]) -> None:
    snapshot["ingresses"] = [gateway, catch_all_gateway(gateway)]
    result = nginx_test(pod_netns(None), write(ingress(proxy_dir), snapshot), proxy_dir)
    assert result.returncode == 0, result.stderr


def with_mongodb(snapshot: Snapshot) -> Snapshot:
    """The snapshot with Istio's bookinfo-db.yaml Service: port 27017 named ``mongo``, which Pilot serves as TCP."""
    mongodb = service("mongodb", "default", 27017, [("10.213.0.12", "mongodb-v1-ggggg", 27017)], port_name="mongo")
    return {**snapshot, "services": [*snapshot["services"], mongodb]}


def test_a_release_agent_closes_connections_to_tcp_services_while_the_reference_proxies_them(
        snapshot: Snapshot, proxy_dir: Path) -> None:
    """Nginmesh's agent renders only HTTP listeners (profiles.NGINMESH_RENDERING): its NGINX closes a connection
    to a TCP service; Istio's Envoy (the local reference) proxies it. HTTP-named ports are the same on both."""
    mesh = with_mongodb(snapshot)
    release = dataclasses.replace(sidecar(proxy_dir), route_rendering=NGINMESH_RENDERING)
    released, reference = render(mesh, release), render(mesh, sidecar(proxy_dir))
    assert route(released, "mongodb:27017") == "closed"
    assert "if ($nginmesh_upstream = closed) { return 444; }" in server_block(released, "outbound")
    assert route(reference, "mongodb:27017") == "svc__default__mongodb__27017"
    for host in ("reviews:9080", "istio-pilot.istio-system:15003"):
        assert route(released, host) == route(reference, host) != "closed"


@pytest.mark.parametrize(("name", "http"), [("http", True), ("http-discovery", True), ("http2", True),
                                            ("grpc-mixer", True), ("mongo", False), ("https", False),
                                            ("tcp", False), ("", False), ("prometheus", False)])
def test_pilot_serves_a_port_as_http_by_the_prefix_of_its_name(name: str, http: bool) -> None:
    assert http_port({"name": name, "port": 1}) == http
