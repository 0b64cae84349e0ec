"""Route rules rendered into NGINX (pytest_nginmesh.mesh.nginx_routes), read back from the generated text.

Header conditions and rule selection are NGINX ``map`` chains; the tests evaluate them with a small
interpreter (exact keys first, then regexes in order, as NGINX does) so that they check what a request
would select, not only the spelling. Whole configurations are checked with the real ``nginx -t`` inside
a throwaway network namespace holding the pod IP, as the agent runs it inside the pod's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from defective_agent import DEFECTS

from pytest_nginmesh.kube import Obj, read_manifest_file
from pytest_nginmesh.mesh.nginx_config import Proxy, Snapshot, render
from pytest_nginmesh.mesh.nginx_routes import DELAY_PORT, UNAVAILABLE
from pytest_nginmesh.profiles import NGINMESH_RENDERING
from pytest_nginmesh.routerules import API_VERSION

REPO = Path(__file__).resolve().parents[2]
ROUTES = REPO / "fixtures" / "routes"
BOOKINFO_MANIFEST = REPO / "fixtures" / "bookinfo" / "bookinfo.yaml"
TEXT_ONLY_DIR = Path("/nonexistent/nginmesh-proxy")  # render() only writes paths into the text
TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")
JASON_REGEX = "^(.*?;)?(user=jason)(;.*)?$"

POD_IP = "10.213.0.2"
POD_NAME = "productpage-v1-aaaaa"
REVIEWS_V1 = ("10.213.0.11", "10.213.0.14")
REVIEWS_V2 = ("10.213.0.12",)
REVIEWS_V3 = ("10.213.0.13",)
RATINGS_V1 = ("10.213.0.21",)
REVIEWS = "svc__default__reviews__9080"
RATINGS = "svc__default__ratings__9080"

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


# -- the snapshot ----------------------------------------------------------------------------------


def instance(ip: str, pod: str, labels: dict[str, str], target_port: int = 9080) -> Obj:
    return {"ip": ip, "pod": pod, "labels": labels, "ports": {"http": target_port}}


def service(name: str, instances: list[Obj], namespace: str = "default", port: int = 9080) -> Obj:
    """A service as pytest_nginmesh.mesh.snapshot.build_snapshot lists it."""
    return {"name": name, "namespace": namespace, "clusterIP": "10.214.0.99",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}], "instances": instances}


def versioned(app: str, version: str, ips: Iterable[str]) -> list[Obj]:
    return [instance(ip, f"{app}-{version}-{n}", {"app": app, "version": version}) for n, ip in enumerate(ips)]


def route_rule(name: str, spec: dict[str, Any], namespace: str = "default") -> Obj:
    """A RouteRule as the snapshot carries it (apiVersion, kind, metadata, spec)."""
    return {"apiVersion": API_VERSION, "kind": "RouteRule", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def bookinfo(rules: list[Obj], extra_services: Iterable[Obj] = ()) -> Snapshot:
    return {
        "version": "0123456789ab",
        "services": [
            service("productpage", [instance(POD_IP, POD_NAME, {"app": "productpage", "version": "v1"})]),
            service("reviews", versioned("reviews", "v1", REVIEWS_V1) + versioned("reviews", "v2", REVIEWS_V2)
                    + versioned("reviews", "v3", REVIEWS_V3)),
            service("ratings", versioned("ratings", "v1", RATINGS_V1)),
            *extra_services,
        ],
        "routeRules": rules,
        "ingresses": [],
    }


def sidecar(directory: Path = TEXT_ONLY_DIR, service_cluster: str = "productpage", pod_name: str = POD_NAME) -> Proxy:
    return Proxy(mode="sidecar", pod_name=pod_name, namespace="default", pod_ip=POD_IP, directory=directory,
                 run_as_root=os.geteuid() == 0, service_cluster=service_cluster)


def ingress(directory: Path) -> Proxy:
    return Proxy(mode="ingress", pod_name="istio-ingress-fffff", namespace="istio-system", pod_ip="10.213.0.3",
                 directory=directory, run_as_root=os.geteuid() == 0)


def rendered(*rules: Obj, service_cluster: str = "productpage", defect: str | None = None) -> str:
    """The sidecar's config; with ``defect``, as tests/defective_agent.py distorts it for the seeded tests."""
    renderer = DEFECTS[defect] if defect else render
    return renderer(bookinfo(list(rules)), sidecar(service_cluster=service_cluster))


def twin_rendered(*rules: Obj) -> str:
    """As the Nginmesh releases' agent renders (the twin's sidecar)."""
    return render(bookinfo(list(rules)), replace(sidecar(), route_rendering=NGINMESH_RENDERING))


def to(destination: str, **fields: Any) -> dict[str, Any]:
    return {"destination": {"name": destination}, **fields}


def routes(*weights: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"labels": {"version": v}, "weight": w} for v, w in weights]


JASON = {"request": {"headers": {"cookie": {"regex": JASON_REGEX}}}}


# -- reading the text ------------------------------------------------------------------------------


def block(conf: str, opening: str) -> list[str]:
    """The stripped lines of the ``{ ... }`` block whose first line is ``opening``, by brace counting."""
    lines = conf.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == opening]
    assert len(starts) == 1, f"expected one block {opening!r}, found {len(starts)}"
    depth, body = 0, []
    for line in lines[starts[0]:]:
        depth += line.count("{") - line.count("}")
        body.append(line.strip())
        if depth == 0:
            return body
    raise AssertionError(f"block {opening!r} is not closed")


def has_block(conf: str, opening: str) -> bool:
    return any(line.strip() == opening for line in conf.splitlines())


def location(conf: str, path: str) -> list[str]:
    return block(conf, f"location = {path} {{")


def rule_location(conf: str, rule_id: str, key: str = REVIEWS) -> list[str]:
    return location(conf, f"/.nginmesh/{key}/{rule_id}")


def servers(conf: str, upstream: str) -> list[str]:
    return block(conf, f"upstream {upstream} {{")[1:-1]


def proxy_pass(lines: list[str]) -> tuple[str, str]:
    """(upstream or variable, uri part) of the one proxy_pass in a location."""
    found = [m.groups() for m in (re.fullmatch(r"proxy_pass http://(\$?\w+)(\$\w+);", line) for line in lines) if m]
    assert len(found) == 1, lines
    return found[0][0], found[0][1]


def split(conf: str, variable: str, key: str = "${request_id}route") -> list[tuple[str, str]]:
    """The (percent, value) entries of ``split_clients "<key>" <variable>``."""
    lines = block(conf, f"split_clients {quoted(key)} {variable} {{")[1:-1]
    return [(m.group(1), m.group(2)) for m in (re.fullmatch(r"(\S+) (\S+);", line) for line in lines) if m]


def shares(entries: list[tuple[str, str]]) -> dict[str, float]:
    """The share of requests each value gets: explicit percentages, and the rest for ``*``."""
    result: dict[str, float] = {}
    for percent, value in entries:
        if percent != "*":
            result[value] = result.get(value, 0.0) + float(percent.rstrip("%"))
    rest = 100.0 - sum(result.values())
    for percent, value in entries:
        if percent == "*" and rest > 0:
            result[value] = result.get(value, 0.0) + rest
    return result


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(token: str) -> str:
    """A token as NGINX reads it: quotes removed, ``\\"`` and ``\\\\`` unescaped."""
    if token.startswith('"') and token.endswith('"'):
        return re.sub(r'\\(["\'\\])', r"\1", token[1:-1])
    return token


TOKEN = r'"(?:[^"\\]|\\.)*"|\S+'
MAP_OPENING = re.compile(rf"map ({TOKEN}) \$(\w+) \{{")
ENTRY = re.compile(rf"({TOKEN}) ({TOKEN});")
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


class Maps:
    """The multi-line ``map`` blocks of a configuration, evaluated like NGINX does for given request variables."""

    def __init__(self, conf: str) -> None:
        self.maps: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        lines = [line.strip() for line in conf.splitlines()]
        for index, line in enumerate(lines):
            opening = MAP_OPENING.fullmatch(line)
            if not opening:
                continue
            entries = []
            for entry_line in lines[index + 1:]:
                if entry_line == "}":
                    break
                entry = ENTRY.fullmatch(entry_line)
                assert entry, entry_line
                entries.append((unquote(entry.group(1)), unquote(entry.group(2))))
            self.maps[opening.group(2)] = (unquote(opening.group(1)), entries)

    def source(self, variable: str) -> str:
        return self.maps[variable][0]

    def entries(self, variable: str) -> list[tuple[str, str]]:
        return self.maps[variable][1]

    def value(self, variable: str, request: dict[str, str]) -> str:
        """The variable's value for a request given as NGINX variables (``{"http_cookie": ...}``)."""
        if variable not in self.maps:
            return request.get(variable, "")
        source, entries = self.maps[variable]
        text = VARIABLE.sub(lambda m: self.value(m.group(1) or m.group(2), request), source)
        for key, result in entries:
            if key != "default" and not key.startswith("~") and key == text:
                return result
        for key, result in entries:
            if key.startswith("~*") and re.search(key[2:], text, re.IGNORECASE):
                return result
            if key.startswith("~") and not key.startswith("~*") and re.search(key[1:], text):
                return result
        return next((result for key, result in entries if key == "default"), "")


def selected(conf: str, request: dict[str, str], key: str = REVIEWS) -> str:
    """The per-rule location (r0, r1, ... or default) a request to the service is rewritten to."""
    return Maps(conf).value(f"nginmesh_rule_{key}", request)


def selection_order(conf: str, key: str = REVIEWS) -> list[str]:
    return [result for _, result in Maps(conf).entries(f"nginmesh_rule_{key}")]


def read_timeouts(conf: str, rule_ids: Iterable[str], key: str = REVIEWS) -> list[str]:
    """The proxy_read_timeout of each rule location, to tell rules apart by the timeout they were given."""
    result = []
    for rule_id in rule_ids:
        (timeout,) = [line for line in rule_location(conf, rule_id, key) if line.startswith("proxy_read_timeout ")]
        result.append(timeout.removeprefix("proxy_read_timeout ").rstrip(";"))
    return result


def server_lines(ips: Iterable[str], copies: int = 1) -> list[str]:
    return [f"server {ip}:9080 max_fails=0;" for ip in ips for _ in range(copies)]


# -- the service location --------------------------------------------------------------------------


def test_without_rules_the_service_location_proxies_straight_to_the_service() -> None:
    conf = rendered()
    assert location(conf, f"/.nginmesh/{REVIEWS}") == [
        f"location = /.nginmesh/{REVIEWS} {{", "internal;", f"proxy_pass http://{REVIEWS}$request_uri;", "}"]
    assert "nginmesh_rule_" not in conf
    assert servers(conf, REVIEWS) == server_lines(REVIEWS_V1 + REVIEWS_V2 + REVIEWS_V3)


def test_a_rule_sends_the_service_location_through_the_rule_selector() -> None:
    conf = rendered(route_rule("reviews-v2", to("reviews", route=routes(("v2", 100)))))
    assert location(conf, f"/.nginmesh/{REVIEWS}") == [
        f"location = /.nginmesh/{REVIEWS} {{", "internal;",
        f"rewrite ^ /.nginmesh/{REVIEWS}/$nginmesh_rule_{REVIEWS} last;", "}"]
    assert proxy_pass(location(conf, f"/.nginmesh/{REVIEWS}/default")) == (REVIEWS, "$request_uri")
    assert proxy_pass(rule_location(conf, "r0")) == (f"{REVIEWS}_r0_0", "$request_uri")
    assert "internal;" in rule_location(conf, "r0")
    assert selected(conf, {}) == "r0"


def test_rules_of_one_service_leave_the_others_alone() -> None:
    conf = rendered(route_rule("reviews-v2", to("reviews", route=routes(("v2", 100)))))
    assert proxy_pass(location(conf, f"/.nginmesh/{RATINGS}")) == (RATINGS, "$request_uri")
    assert f"nginmesh_rule_{RATINGS}" not in conf


def test_selector_defaults_to_the_plain_service() -> None:
    conf = rendered(route_rule("jason", to("reviews", match=JASON, route=routes(("v2", 100)))))
    assert Maps(conf).entries(f"nginmesh_rule_{REVIEWS}")[-1] == ("default", "default")
    assert selected(conf, {}) == "default"


# -- precedence ------------------------------------------------------------------------------------


PRECEDENCE_RULES = [
    route_rule("a-low", to("reviews", precedence=1, httpReqTimeout={"simpleTimeout": {"timeout": "1s"}})),
    route_rule("d-tie", to("reviews", precedence=3, httpReqTimeout={"simpleTimeout": {"timeout": "4s"}})),
    route_rule("b-high", to("reviews", precedence=5, httpReqTimeout={"simpleTimeout": {"timeout": "2s"}})),
    route_rule("c-tie", to("reviews", precedence=3, httpReqTimeout={"simpleTimeout": {"timeout": "3s"}})),
]


def test_selection_lists_rules_strongest_precedence_first_ties_by_name() -> None:
    conf = rendered(*PRECEDENCE_RULES)
    assert selection_order(conf) == ["r0", "r1", "r2", "r3", "default"]
    # b-high (5), then c-tie and d-tie (3, by name), then a-low (1)
    assert read_timeouts(conf, ["r0", "r1", "r2", "r3"]) == ["2s", "3s", "4s", "1s"]


def test_strongest_matching_rule_wins() -> None:
    conf = rendered(route_rule("reviews-default", to("reviews", precedence=1, route=routes(("v1", 100)))),
                    route_rule("reviews-test-v2", to("reviews", precedence=2, match=JASON, route=routes(("v2", 100)))))
    assert proxy_pass(rule_location(conf, "r0"))[0] == f"{REVIEWS}_r0_0"
    assert servers(conf, f"{REVIEWS}_r0_0") == server_lines(REVIEWS_V2)
    assert servers(conf, f"{REVIEWS}_r1_0") == server_lines(REVIEWS_V1)
    assert selected(conf, {"http_cookie": "session=1;user=jason"}) == "r0"
    assert selected(conf, {"http_cookie": "user=bob"}) == "r1"
    assert selected(conf, {}) == "r1"


# -- header conditions -----------------------------------------------------------------------------


def test_cookie_condition_becomes_a_map_on_http_cookie_with_the_regex() -> None:
    conf = rendered(route_rule("jason", to("reviews", match=JASON, route=routes(("v2", 100)))))
    maps = Maps(conf)
    variable = f"nginmesh_m_{REVIEWS}_r0_0"
    assert maps.source(variable) == "$http_cookie"
    assert maps.entries(variable) == [(f"~^(?:{JASON_REGEX})$", "1"), ("default", "")]
    assert selected(conf, {"http_cookie": "user=jason"}) == "r0"
    assert selected(conf, {"http_cookie": "user=jasonx"}) == "default"


def test_header_with_a_dash_reads_the_nginx_http_variable() -> None:
    conf = rendered(route_rule("users", to("reviews", match={"request": {"headers": {"x-user": {"exact": "a.b"}}}})))
    maps = Maps(conf)
    assert maps.source(f"nginmesh_m_{REVIEWS}_r0_0") == "$http_x_user"
    assert selected(conf, {"http_x_user": "a.b"}) == "r0"
    assert selected(conf, {"http_x_user": "aXb"}) == "default"
    assert selected(conf, {"http_x_user": "a.b.c"}) == "default"


@pytest.mark.parametrize(("header", "variable"), [("scheme", "$scheme"), ("method", "$request_method"),
                                                  ("authority", "$http_host"), (":authority", "$http_host"),
                                                  ("x-b3-flags", "$http_x_b3_flags")])
def test_special_headers_read_their_nginx_variables(header: str, variable: str) -> None:
    conf = rendered(route_rule("special", to("reviews", match={"request": {"headers": {header: {"exact": "x"}}}})))
    assert Maps(conf).source(f"nginmesh_m_{REVIEWS}_r0_0") == variable


@pytest.mark.parametrize("kind", ["exact", "regex"])
def test_uri_condition_reads_request_uri_and_accepts_a_query_string(kind: str) -> None:
    value = "/api/v1/products" if kind == "exact" else "/api/v[0-9]+/products"
    conf = rendered(route_rule("uri", to("reviews", match={"request": {"headers": {"uri": {kind: value}}}})))
    maps = Maps(conf)
    variable = f"nginmesh_m_{REVIEWS}_r0_0"
    assert maps.source(variable) == "$request_uri"
    regex = maps.entries(variable)[0][0].removeprefix("~")
    assert re.search(regex, "/api/v1/products")
    assert re.search(regex, "/api/v1/products?x=1")
    assert not re.search(regex, "/api/v1/products/1")
    assert not re.search(regex, "/api/v1/productsx")
    assert selected(conf, {"request_uri": "/api/v1/products?x=1"}) == "r0"
    assert selected(conf, {"request_uri": "/productpage"}) == "default"


def test_uri_prefix_condition_matches_longer_paths() -> None:
    conf = rendered(route_rule("uri", to("reviews", match={"request": {"headers": {"uri": {"prefix": "/api/"}}}})))
    assert selected(conf, {"request_uri": "/api/v1/products?x=1"}) == "r0"
    assert selected(conf, {"request_uri": "/apix"}) == "default"


def test_all_header_conditions_of_a_rule_must_hold() -> None:
    headers = {"cookie": {"regex": JASON_REGEX}, "x-user": {"prefix": "qa-"}, "uri": {"prefix": "/reviews"}}
    conf = rendered(route_rule("all", to("reviews", match={"request": {"headers": headers}})))
    request = {"http_cookie": "user=jason", "http_x_user": "qa-7", "request_uri": "/reviews/1"}
    assert selected(conf, request) == "r0"
    for name, other in [("http_cookie", "user=bob"), ("http_x_user", "dev-7"), ("request_uri", "/ratings/1")]:
        assert selected(conf, {**request, name: other}) == "default", name
    assert Maps(conf).entries(f"nginmesh_m_{REVIEWS}_r0")[0] == ("111", "1")


def test_a_rule_without_conditions_is_always_chosen_when_no_stronger_rule_matches() -> None:
    conf = rendered(route_rule("jason", to("reviews", precedence=2, match=JASON)),
                    route_rule("everyone", to("reviews", precedence=1)))
    assert Maps(conf).source(f"nginmesh_rule_{REVIEWS}") == f"$nginmesh_m_{REVIEWS}_r0:1"
    assert selected(conf, {"http_cookie": "user=jason"}) == "r0"
    assert selected(conf, {"http_cookie": "user=bob"}) == "r1"


def test_header_values_with_quotes_and_backslashes_survive_quoting() -> None:
    conf = rendered(route_rule("odd", to("reviews", match={"request": {"headers": {"x-odd": {"exact": 'a"b\\c'}}}})))
    assert selected(conf, {"http_x_odd": 'a"b\\c'}) == "r0"
    assert selected(conf, {"http_x_odd": "abc"}) == "default"


# -- weighted routes -------------------------------------------------------------------------------


def test_weighted_routes_become_split_clients_over_label_groups() -> None:
    conf = rendered(route_rule("reviews-75-25", to("reviews", route=routes(("v1", 75), ("v2", 25)))))
    variable = f"$nginmesh_route_{REVIEWS}_r0"
    assert proxy_pass(rule_location(conf, "r0")) == (variable, "$request_uri")
    entries = split(conf, variable)
    assert entries == [("75%", f"{REVIEWS}_r0_0"), ("*", f"{REVIEWS}_r0_1")]
    assert shares(entries) == {f"{REVIEWS}_r0_0": 75.0, f"{REVIEWS}_r0_1": 25.0}
    assert servers(conf, f"{REVIEWS}_r0_0") == server_lines(REVIEWS_V1)
    assert servers(conf, f"{REVIEWS}_r0_1") == server_lines(REVIEWS_V2)


def test_three_way_split() -> None:
    conf = rendered(route_rule("three", to("reviews", route=routes(("v1", 50), ("v2", 30), ("v3", 20)))))
    entries = split(conf, f"$nginmesh_route_{REVIEWS}_r0")
    assert shares(entries) == {f"{REVIEWS}_r0_0": 50.0, f"{REVIEWS}_r0_1": 30.0, f"{REVIEWS}_r0_2": 20.0}
    for index, ips in enumerate((REVIEWS_V1, REVIEWS_V2, REVIEWS_V3)):
        assert servers(conf, f"{REVIEWS}_r0_{index}") == server_lines(ips)


def test_route_on_several_labels_takes_only_pods_carrying_all_of_them() -> None:
    extra = instance("10.213.0.15", "reviews-v1-canary", {"app": "reviews", "version": "v1", "track": "canary"})
    snapshot = bookinfo([route_rule("canary", to("reviews", route=[{"labels": {"version": "v1", "track": "canary"}}]))])
    snapshot["services"][1]["instances"].append(extra)
    conf = render(snapshot, sidecar())
    assert servers(conf, f"{REVIEWS}_r0_0") == ["server 10.213.0.15:9080 max_fails=0;"]


def test_single_route_needs_no_split() -> None:
    conf = rendered(route_rule("reviews-v3", to("reviews", route=routes(("v3", 100)))))
    assert "split_clients" not in conf
    assert proxy_pass(rule_location(conf, "r0")) == (f"{REVIEWS}_r0_0", "$request_uri")
    assert servers(conf, f"{REVIEWS}_r0_0") == server_lines(REVIEWS_V3)


def test_rule_without_routes_uses_every_instance() -> None:
    conf = rendered(route_rule("timeout-only", to("reviews", httpReqTimeout={"simpleTimeout": {"timeout": "2s"}})))
    assert servers(conf, f"{REVIEWS}_r0_0") == server_lines(REVIEWS_V1 + REVIEWS_V2 + REVIEWS_V3)


def test_weight_zero_routes_are_left_out_of_the_split() -> None:
    conf = rendered(route_rule("no-v1", to("reviews", route=routes(("v1", 0), ("v2", 50), ("v3", 50)))))
    entries = split(conf, f"$nginmesh_route_{REVIEWS}_r0")
    assert shares(entries) == {f"{REVIEWS}_r0_1": 50.0, f"{REVIEWS}_r0_2": 50.0}


def test_a_single_route_left_after_weight_zero_needs_no_split() -> None:
    conf = rendered(route_rule("v2-only", to("reviews", route=routes(("v1", 0), ("v2", 100)))))
    assert "split_clients" not in conf
    assert proxy_pass(rule_location(conf, "r0"))[0] == f"{REVIEWS}_r0_1"


def test_route_to_labels_no_instance_carries_is_unavailable() -> None:
    conf = rendered(route_rule("v9", to("reviews", route=routes(("v9", 100)))))
    assert proxy_pass(rule_location(conf, "r0")) == (UNAVAILABLE, "$request_uri")
    assert not has_block(conf, f"upstream {REVIEWS}_r0_0 {{")


def test_unavailable_route_keeps_its_share_of_a_split() -> None:
    conf = rendered(route_rule("half-v9", to("reviews", route=routes(("v1", 50), ("v9", 50)))))
    assert shares(split(conf, f"$nginmesh_route_{REVIEWS}_r0")) == {f"{REVIEWS}_r0_0": 50.0, UNAVAILABLE: 50.0}


# -- retries and timeouts --------------------------------------------------------------------------


def test_retries_repeat_each_server_and_bound_the_tries() -> None:
    retries = {"simpleRetry": {"attempts": 2, "perTryTimeout": "2s"}}
    conf = rendered(route_rule("retry", to("reviews", route=routes(("v1", 100)), httpReqRetries=retries,
                                           httpReqTimeout={"simpleTimeout": {"timeout": "6s"}})))
    assert servers(conf, f"{REVIEWS}_r0_0") == server_lines(REVIEWS_V1, copies=3)
    body = rule_location(conf, "r0")
    assert "proxy_next_upstream_tries 3;" in body
    assert "proxy_next_upstream error timeout http_500 http_502 http_503 http_504;" in body
    assert "proxy_next_upstream_timeout 6s;" in body
    assert "proxy_read_timeout 2s;" in body


def test_retries_apply_to_every_group_of_a_split() -> None:
    conf = rendered(route_rule("retry", to("reviews", route=routes(("v1", 50), ("v3", 50)),
                                           httpReqRetries={"simpleRetry": {"attempts": 1}})))
    assert servers(conf, f"{REVIEWS}_r0_0") == server_lines(REVIEWS_V1, copies=2)
    assert servers(conf, f"{REVIEWS}_r0_1") == server_lines(REVIEWS_V3, copies=2)
    assert "proxy_next_upstream_tries 2;" in rule_location(conf, "r0")


def test_without_retries_no_next_upstream() -> None:
    conf = rendered(route_rule("plain", to("reviews", route=routes(("v1", 100)))))
    assert not any(line.startswith("proxy_next_upstream") for line in rule_location(conf, "r0"))
    assert servers(conf, f"{REVIEWS}_r0_0") == server_lines(REVIEWS_V1)


def test_timeout_sets_the_read_timeout() -> None:
    conf = rendered(route_rule("slow", to("reviews", httpReqTimeout={"simpleTimeout": {"timeout": "3s"}})))
    assert read_timeouts(conf, ["r0"]) == ["3s"]
    assert "proxy_send_timeout 3s;" in rule_location(conf, "r0")


def test_without_timeout_the_15s_default_applies() -> None:
    conf = rendered(route_rule("plain", to("reviews", route=routes(("v1", 100)))))
    assert read_timeouts(conf, ["r0"]) == ["15s"]
    assert "  proxy_read_timeout 15s;" in conf.splitlines()


@pytest.mark.parametrize("field", ["timeout", "perTryTimeout"])
def test_sub_second_timeouts_render_in_nginx_time_syntax(field: str) -> None:
    spec = (to("reviews", httpReqTimeout={"simpleTimeout": {"timeout": "1.5s"}}) if field == "timeout"
            else to("reviews", httpReqRetries={"simpleRetry": {"attempts": 1, "perTryTimeout": "500ms"}}))
    body = rule_location(rendered(route_rule("fast", spec)), "r0")
    timeouts = [line.split()[1].rstrip(";") for line in body if line.split()[0].endswith("_timeout")]
    assert timeouts
    for value in timeouts:  # nginx time values are whole numbers with units, e.g. 1500ms or 1s500ms
        assert re.fullmatch(r"(\d+(ms|s|m|h|d|w|M|y)?)+", value), value


# -- as the Nginmesh releases render (the twins) ------------------------------------------------------


def test_the_release_agent_retries_with_next_upstream_tries_over_one_server_line_per_endpoint() -> None:
    retries = {"simpleRetry": {"attempts": 2, "perTryTimeout": "2s"}}
    conf = twin_rendered(route_rule("retry", to("reviews", route=routes(("v1", 100)), httpReqRetries=retries)))
    assert servers(conf, f"{REVIEWS}_r0_0") == server_lines(REVIEWS_V1)
    body = rule_location(conf, "r0")
    assert "proxy_next_upstream error http_500 http_502 http_503 http_504;" in body
    assert "proxy_next_upstream_timeout 2000ms;" in body
    assert "proxy_next_upstream_tries 2;" in body
    assert not any(line.startswith(("proxy_read_timeout", "proxy_send_timeout")) for line in body)


def test_the_release_agent_drops_the_request_timeout() -> None:
    conf = twin_rendered(route_rule("slow", to("reviews", httpReqTimeout={"simpleTimeout": {"timeout": "3s"}})))
    assert not any("proxy_read_timeout" in line for line in conf.splitlines())  # NGINX's own 60 s
    assert not any("3s" in line for line in rule_location(conf, "r0"))


def test_the_release_agent_drops_the_fault_delay_and_keeps_the_abort() -> None:
    faults = {"abort": {"percent": 10, "httpStatus": 503}, "delay": {"percent": 100, "fixedDelay": "7s"}}
    conf = twin_rendered(route_rule("faults", to("reviews", httpFault=faults)))
    assert "auth_request" not in conf
    assert "${request_id}delay" not in conf
    assert f"if ($nginmesh_abort_{REVIEWS}_r0) {{ return 503; }}" in rule_location(conf, "r0")


def test_the_releases_ingress_redirects_as_envoy_does_and_a_sidecar_with_302() -> None:
    redirect = route_rule("moved", to("reviews", redirect={"uri": "/v2"}))
    twin_ingress = render(bookinfo([redirect]), replace(sidecar(), mode="ingress", redirect_status=301))
    assert any(line.strip().startswith("return 301 ") for line in rule_location(twin_ingress, "r0"))
    assert any(line.strip().startswith("return 302 ") for line in rule_location(twin_rendered(redirect), "r0"))


# -- faults ----------------------------------------------------------------------------------------


def test_abort_splits_on_the_request_id_and_returns_the_status() -> None:
    conf = rendered(route_rule("abort", to("reviews", httpFault={"abort": {"percent": 25, "httpStatus": 503}})))
    name = f"{REVIEWS}_r0"
    assert split(conf, f"$nginmesh_abort_{name}", "${request_id}abort") == [("25%", "1"), ("*", '""')]
    assert f"if ($nginmesh_abort_{name}) {{ return 503; }}" in rule_location(conf, "r0")


def test_abort_percent_keeps_its_fraction() -> None:
    conf = rendered(route_rule("abort", to("reviews", httpFault={"abort": {"percent": 0.5, "httpStatus": 500}})))
    assert split(conf, f"$nginmesh_abort_{REVIEWS}_r0", "${request_id}abort")[0] == ("0.5%", "1")


def test_delay_splits_on_the_request_id_and_waits_through_auth_request() -> None:
    conf = rendered(route_rule("delay", to("reviews", httpFault={"delay": {"percent": 50, "fixedDelay": "7s"}})))
    name = f"{REVIEWS}_r0"
    assert split(conf, f"$nginmesh_delay_{name}", "${request_id}delay") == [("50%", "7000"), ("*", "0")]
    assert f"auth_request /.nginmesh/delay/{name};" in rule_location(conf, "r0")
    delay = location(conf, f"/.nginmesh/delay/{name}")
    assert "internal;" in delay
    assert f"proxy_pass http://127.0.0.1:{DELAY_PORT}/delay/$nginmesh_delay_{name};" in delay


def test_sub_second_delay_is_in_milliseconds() -> None:
    conf = rendered(route_rule("delay", to("reviews", httpFault={"delay": {"fixedDelay": "1.5s"}})))
    assert split(conf, f"$nginmesh_delay_{REVIEWS}_r0", "${request_id}delay")[0] == ("100%", "1500")


def test_delay_milliseconds_are_rounded_not_truncated() -> None:
    conf = rendered(route_rule("delay", to("reviews", httpFault={"delay": {"fixedDelay": "2.01s"}})))
    assert split(conf, f"$nginmesh_delay_{REVIEWS}_r0", "${request_id}delay")[0] == ("100%", "2010")


def test_abort_and_delay_together_on_the_jason_cookie() -> None:
    fault = {"abort": {"percent": 10, "httpStatus": 500}, "delay": {"percent": 100, "fixedDelay": "2s"}}
    conf = rendered(route_rule("both", to("ratings", match=JASON, route=routes(("v1", 100)), httpFault=fault)))
    body = rule_location(conf, "r0", RATINGS)
    assert f"if ($nginmesh_abort_{RATINGS}_r0) {{ return 500; }}" in body
    assert f"auth_request /.nginmesh/delay/{RATINGS}_r0;" in body
    assert proxy_pass(body) == (f"{RATINGS}_r0_0", "$request_uri")
    assert selected(conf, {"http_cookie": "user=jason"}, RATINGS) == "r0"


@pytest.mark.parametrize("percent", [0, 12.345])
def test_fault_percents_render_as_split_clients_accepts(percent: float) -> None:
    fault = {"abort": {"percent": percent, "httpStatus": 500}, "delay": {"percent": percent, "fixedDelay": "1s"}}
    conf = rendered(route_rule("faults", to("reviews", httpFault=fault)))
    for line in conf.splitlines():
        if re.fullmatch(r"\s+[0-9.]+% \S+;", line):
            value = line.split("%")[0].strip()
            assert re.fullmatch(r"\d+(\.\d{1,2})?", value) and float(value) > 0, line


# -- redirect and rewrite --------------------------------------------------------------------------


def test_redirect_returns_302_with_the_new_uri_and_authority() -> None:
    redirect = {"uri": "/v1/bookRatings", "authority": "bookratings.default.svc.cluster.local"}
    conf = rendered(route_rule("moved", to("ratings", match={"request": {"headers": {"uri": {"exact": "/ratings"}}}},
                                           redirect=redirect)))
    body = rule_location(conf, "r0", RATINGS)
    assert 'return 302 "http://bookratings.default.svc.cluster.local/v1/bookRatings";' in body
    assert not any(line.startswith("proxy_pass") for line in body)


def test_redirect_of_the_uri_keeps_the_host() -> None:
    conf = rendered(route_rule("moved", to("ratings", redirect={"uri": "/v2/ratings"})))
    assert 'return 302 "http://$http_host/v2/ratings";' in rule_location(conf, "r0", RATINGS)


def test_redirect_of_the_authority_keeps_the_request_uri() -> None:
    conf = rendered(route_rule("moved", to("ratings", redirect={"authority": "ratings.prod:9080"})))
    (line,) = [line for line in rule_location(conf, "r0", RATINGS) if line.startswith("return 302")]
    assert "$request_uri" in line
    assert "$uri" not in line


def test_rewrite_replaces_the_matched_prefix_of_the_request_uri() -> None:
    match = {"request": {"headers": {"uri": {"prefix": "/api/v1/products"}}}}
    conf = rendered(route_rule("rewrite", to("reviews", match=match, rewrite={"uri": "/v2/products"})))
    body = rule_location(conf, "r0")
    variable = f"$nginmesh_uri_{REVIEWS}_r0"
    assert f"set {variable} $request_uri;" in body
    (condition,) = [line for line in body if line.startswith("if ($request_uri ~ ")]
    parsed = re.fullmatch(rf'if \(\$request_uri ~ ({TOKEN})\) \{{ set {re.escape(variable)} ({TOKEN}); \}}',
                          condition)
    assert parsed, condition
    regex, replacement = unquote(parsed.group(1)), unquote(parsed.group(2))
    assert replacement == "/v2/products$1"
    for original, expected in [("/api/v1/products", "/v2/products"), ("/api/v1/products/7?x=1", "/v2/products/7?x=1")]:
        found = re.search(regex, original)
        assert found, original
        assert replacement.replace("$1", found.group(1)) == expected
    assert not re.search(regex, "/other/api/v1/products")
    assert proxy_pass(body) == (f"{REVIEWS}_r0_0", variable)


def test_rewrite_without_a_uri_match_replaces_the_leading_slash() -> None:
    conf = rendered(route_rule("rewrite", to("reviews", rewrite={"uri": "/v2/"})))
    (condition,) = [line for line in rule_location(conf, "r0") if line.startswith("if ($request_uri ~ ")]
    assert '"^\\\\/(.*)$"' in condition
    assert '"/v2/$1"' in condition


def test_rewrite_of_the_authority_sets_host_and_keeps_the_mesh_headers() -> None:
    conf = rendered(route_rule("rewrite", to("reviews", rewrite={"authority": "reviews.prod"})))
    body = rule_location(conf, "r0")
    assert 'proxy_set_header Host "reviews.prod";' in body
    assert "proxy_set_header x-request-id $nginmesh_request_id;" in body
    assert 'proxy_set_header Connection "";' in body
    assert proxy_pass(body)[1] == "$request_uri"


# -- which rules a proxy applies -------------------------------------------------------------------


def test_rule_for_another_source_is_not_applied() -> None:
    conf = rendered(route_rule("from-reviews", to("ratings", match={"source": {"name": "reviews"}})))
    assert f"nginmesh_rule_{RATINGS}" not in conf


def test_rule_for_the_proxys_own_source_is_applied() -> None:
    conf = rendered(route_rule("from-productpage", to("ratings", match={"source": {"name": "productpage"}})))
    assert selected(conf, {}, RATINGS) == "r0"


def test_source_name_is_compared_with_the_service_cluster() -> None:
    rule = route_rule("from-reviews", to("ratings", match={"source": {"name": "reviews"}}))
    assert f"nginmesh_rule_{RATINGS}" in rendered(rule, service_cluster="reviews")


@pytest.mark.parametrize(("labels", "applied"), [
    ({"version": "v1"}, True),
    ({"app": "productpage", "version": "v1"}, True),
    ({"version": "v2"}, False),
    ({"app": "productpage", "track": "canary"}, False),
])
def test_source_labels_must_be_a_subset_of_the_proxys_pod_labels(labels: dict[str, str], applied: bool) -> None:
    conf = rendered(route_rule("by-labels", to("ratings", match={"source": {"labels": labels}})))
    assert (f"nginmesh_rule_{RATINGS}" in conf) is applied


def test_source_labels_do_not_match_a_proxy_outside_every_service() -> None:
    rule = route_rule("by-labels", to("ratings", match={"source": {"labels": {"version": "v1"}}}))
    conf = render(bookinfo([rule]), sidecar(pod_name="loner"))
    assert f"nginmesh_rule_{RATINGS}" not in conf


def test_rules_for_another_namespaces_service_of_the_same_name_do_not_apply() -> None:
    shop_reviews = service("reviews", versioned("reviews", "v1", ["10.213.1.11"]), namespace="shop")
    rules = [route_rule("shop-reviews", to("reviews", route=routes(("v1", 100))), namespace="shop"),
             route_rule("to-shop", {"destination": {"name": "reviews", "namespace": "shop"}})]
    conf = render(bookinfo(rules, [shop_reviews]), sidecar())
    assert f"nginmesh_rule_{REVIEWS}" not in conf
    assert selection_order(conf, "svc__shop__reviews__9080") == ["r0", "r1", "default"]


def test_services_of_different_namespaces_get_distinct_names() -> None:
    prod_reviews = service("reviews", versioned("reviews", "v1", ["10.213.1.11"]), namespace="bookinfo-prod")
    reviews_prod = service("prod-reviews", versioned("reviews", "v1", ["10.213.2.11"]), namespace="bookinfo")
    conf = render(bookinfo([], [prod_reviews, reviews_prod]), sidecar())
    upstreams = re.findall(r"^\s*upstream (\S+) \{$", conf, re.MULTILINE)
    assert len(upstreams) == len(set(upstreams)), sorted(upstreams)


def test_invalid_rules_in_the_snapshot_are_skipped() -> None:
    broken = route_rule("broken", to("reviews", route=routes(("v1", 60), ("v2", 60))))
    good = route_rule("good", to("reviews", route=routes(("v3", 100))))
    conf = rendered(broken, good)
    assert selection_order(conf) == ["r0", "default"]
    assert servers(conf, f"{REVIEWS}_r0_0") == server_lines(REVIEWS_V3)


# -- seeded defects (tests/defective_agent.py distorts the real renderer from outside) ---------------


def test_skew_weights_turns_50_50_into_70_30() -> None:
    rule = route_rule("half", to("reviews", route=routes(("v1", 50), ("v3", 50))))
    variable = f"$nginmesh_route_{REVIEWS}_r0"
    assert shares(split(rendered(rule), variable)) == {f"{REVIEWS}_r0_0": 50.0, f"{REVIEWS}_r0_1": 50.0}
    assert shares(split(rendered(rule, defect="skew-weights"), variable)) == {
        f"{REVIEWS}_r0_0": 70.0, f"{REVIEWS}_r0_1": 30.0}


def test_ignore_headers_drops_the_header_maps_so_the_rule_always_matches() -> None:
    rules = (route_rule("jason", to("reviews", precedence=2, match=JASON, route=routes(("v2", 100)))),
             route_rule("default", to("reviews", precedence=1, route=routes(("v1", 100)))))
    assert selected(rendered(*rules), {"http_cookie": "user=bob"}) == "r1"
    conf = rendered(*rules, defect="ignore-headers")
    assert "map $http_cookie" not in conf
    assert selected(conf, {"http_cookie": "user=bob"}) == "r0"
    assert selected(conf, {}) == "r0"


def test_invert_precedence_reverses_the_order() -> None:
    conf = rendered(*PRECEDENCE_RULES, defect="invert-precedence")
    assert read_timeouts(conf, ["r0", "r1", "r2", "r3"]) == ["1s", "3s", "4s", "2s"]


def test_drop_timeout_falls_back_to_the_default() -> None:
    rule = route_rule("slow", to("reviews", httpReqTimeout={"simpleTimeout": {"timeout": "3s"}}))
    assert read_timeouts(rendered(rule), ["r0"]) == ["3s"]
    assert read_timeouts(rendered(rule, defect="drop-timeout"), ["r0"]) == ["15s"]


def test_no_reports_and_wrong_version_distort_only_the_proxys_own_report() -> None:
    snapshot, proxy = bookinfo([]), replace(sidecar(), report_to="10.0.0.9:9125")
    honest = render(snapshot, proxy)
    assert "access_log syslog:server=10.0.0.9:9125" in honest
    assert "access_log syslog" not in DEFECTS["no-reports"](snapshot, proxy)
    lying = DEFECTS["wrong-version"](snapshot, proxy)
    assert lying != honest
    assert lying == honest.replace('"destination_version":"v1"', '"destination_version":"v1-wrong"', 1)


# -- nginx -t --------------------------------------------------------------------------------------


def istio_samples() -> list[Obj]:
    """Every rule of Istio's samples, each under its own name (several samples reuse ``reviews-default``)."""
    rules = []
    for path in sorted(ROUTES.glob("*.yaml")):
        for index, obj in enumerate(read_manifest_file(str(path))):
            obj["metadata"] = {"name": f"{path.stem}-{index}", "namespace": "default"}
            rules.append(obj)
    return rules


def every_feature() -> list[Obj]:
    """Rules that between them use every field the renderer supports, several on one service."""
    return [
        route_rule("details-moved", to("details", precedence=9, redirect={
            "uri": "/v2/details", "authority": "details.default.svc.cluster.local"},
            match={"request": {"headers": {"uri": {"exact": "/details/0"}}}})),
        route_rule("reviews-legacy", to("reviews", precedence=8, rewrite={
            "uri": "/", "authority": "reviews.default.svc.cluster.local:9080"},
            match={"request": {"headers": {"uri": {"prefix": "/legacy/"}, "x-user": {"regex": r"qa-\d+"},
                                           "authority": {"exact": "reviews:9080"}, "scheme": {"exact": "http"}}}})),
        route_rule("ratings-retries", to("ratings", precedence=7, route=routes(("v1", 100)),
                                         httpReqTimeout={"simpleTimeout": {"timeout": "10s"}},
                                         httpReqRetries={"simpleRetry": {"attempts": 3, "perTryTimeout": "2s"}})),
        route_rule("ratings-faults", to("ratings", precedence=6, httpFault={
            "abort": {"percent": 10, "httpStatus": 503}, "delay": {"percent": 50, "fixedDelay": "2s"}},
            match={"request": {"headers": {"cookie": {"prefix": "session="}, "method": {"exact": "GET"}}}})),
        route_rule("reviews-split", to("reviews", precedence=5, route=routes(("v1", 50), ("v2", 30), ("v3", 20)),
                                       httpReqTimeout={"simpleTimeout": {"timeout": "3s"}},
                                       httpReqRetries={"simpleRetry": {"attempts": 1}})),
        route_rule("reviews-odd", to("reviews", precedence=4, route=routes(("v1", 0), ("v2", 60), ("v9", 40)),
                                     match={"request": {"headers": {"x-odd": {"exact": 'a "quoted" {value};'}}}})),
        route_rule("everything", to("reviews", precedence=3, match=JASON, route=routes(("v2", 50), ("v3", 50)),
                                    rewrite={"uri": "/v3/", "authority": "reviews.prod"},
                                    httpReqTimeout={"simpleTimeout": {"timeout": "1m"}},
                                    httpReqRetries={"simpleRetry": {"attempts": 2, "perTryTimeout": "5s"}},
                                    httpFault={"abort": {"percent": 1, "httpStatus": 418},
                                               "delay": {"percent": 99, "fixedDelay": "1s"}})),
    ]


def full_snapshot(rules: list[Obj]) -> Snapshot:
    details = service("details", versioned("details", "v1", ["10.213.0.31"]))
    snapshot = bookinfo(rules, [details])
    (gateway,) = [o for o in read_manifest_file(str(BOOKINFO_MANIFEST)) if o["kind"] == "Ingress"]
    snapshot["ingresses"] = [{"kind": "Ingress", "metadata": {"name": gateway["metadata"]["name"],
                                                              "namespace": "default", "annotations": {}},
                              "spec": gateway["spec"]}]
    return snapshot


@pytest.fixture
def proxy_dir(tmp_path: Path) -> Path:
    """The proxy's directory with the temp folders the agent creates before rendering."""
    for sub in TEMP_DIRS:
        (tmp_path / "tmp" / sub).mkdir(parents=True)
    return tmp_path


@pytest.fixture
def nginx_t(make_netns: Callable[[], str]) -> Callable[[Proxy, Snapshot], subprocess.CompletedProcess[str]]:
    """Render a proxy's configuration and run ``nginx -t`` on it in a namespace holding its pod IP."""

    def check(proxy: Proxy, snapshot: Snapshot) -> subprocess.CompletedProcess[str]:
        config = proxy.directory / "nginx.conf"
        config.write_text(render(snapshot, proxy))
        netns = make_netns()
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True, timeout=10)
        subprocess.run(["ip", "-n", netns, "addr", "add", f"{proxy.pod_ip}/32", "dev", "lo"], check=True, timeout=10)
        return subprocess.run(["ip", "netns", "exec", netns, "nginx", "-t", "-c", str(config),
                               "-e", str(proxy.directory / "error.log")], capture_output=True, text=True, timeout=30)

    return check


def test_every_feature_is_applied_by_the_sidecar() -> None:
    """The configuration nginx -t checks below really holds the rules (not silently skipped ones)."""
    conf = render(full_snapshot(istio_samples() + every_feature()), sidecar())
    for feature in ("return 302 ", "auth_request ", "proxy_next_upstream_tries ", 'split_clients "${request_id}abort"',
                    'split_clients "${request_id}route"', "proxy_set_header Host \"reviews.prod\";",
                    f"* {UNAVAILABLE};", "map $request_method", "map $http_x_odd"):
        assert feature in conf, feature
    assert len(selection_order(conf)) == 6 + 4 + 1  # the samples' six reviews rules, four feature rules, default


@needs_nginx
@pytest.mark.parametrize("make_proxy", [sidecar, ingress], ids=["sidecar", "ingress"])
def test_nginx_accepts_all_samples_and_every_feature(
    make_proxy: Callable[[Path], Proxy], proxy_dir: Path,
    nginx_t: Callable[[Proxy, Snapshot], subprocess.CompletedProcess[str]],
) -> None:
    result = nginx_t(make_proxy(proxy_dir), full_snapshot(istio_samples() + every_feature()))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@needs_nginx
def test_nginx_accepts_every_feature_as_the_release_agent_renders_it(
    proxy_dir: Path, nginx_t: Callable[[Proxy, Snapshot], subprocess.CompletedProcess[str]],
) -> None:
    twin = replace(sidecar(proxy_dir), route_rendering=NGINMESH_RENDERING)
    result = nginx_t(twin, full_snapshot(istio_samples() + every_feature()))
    assert result.returncode == 0, result.stderr


@needs_nginx
@pytest.mark.parametrize("spec", [
    to("reviews", httpReqTimeout={"simpleTimeout": {"timeout": "1.5s"}}),
    to("reviews", httpReqRetries={"simpleRetry": {"attempts": 2, "perTryTimeout": "500ms"}}),
    to("reviews", httpFault={"abort": {"percent": 0, "httpStatus": 500}}),
    to("reviews", httpFault={"delay": {"percent": 33.333, "fixedDelay": "1s"}}),
], ids=["timeout-1.5s", "per-try-500ms", "abort-0-percent", "delay-33.333-percent"])
def test_nginx_accepts_valid_rules_with_fractions(
    spec: dict[str, Any], proxy_dir: Path, nginx_t: Callable[[Proxy, Snapshot], subprocess.CompletedProcess[str]],
) -> None:
    result = nginx_t(sidecar(proxy_dir), full_snapshot([route_rule("fractions", spec)]))
    assert result.returncode == 0, result.stderr


@needs_nginx
def test_nginx_accepts_long_rule_variable_names(
    proxy_dir: Path, nginx_t: Callable[[Proxy, Snapshot], subprocess.CompletedProcess[str]],
) -> None:
    # Found on the live mesh: a uri match on productpage made names longer than NGINX's default hash buckets.
    rules = [route_rule(f"productpage-rule-{i}", to("productpage", precedence=i, match={"request": {"headers": {
        "uri": {"exact": f"/api/v1/products/{i}"}, "x-a-rather-long-header-name": {"prefix": "x"}}}},
        redirect={"uri": "/productpage"})) for i in range(8)]
    result = nginx_t(sidecar(proxy_dir), full_snapshot(rules))
    assert result.returncode == 0, result.stderr
