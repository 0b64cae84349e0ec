"""Admission of the local API server, and the bounds before it: manifest parsing, request bodies, the CLI's input.

The API server here is the daemon's own ApiServer on a temporary state directory, its REST layer called in-process;
only its control loop (controllers, kubelet) does not run, so nothing needs root. The HTTPS handler's bounds (body
size, time, Content-Length) are tested in tests/unit/rest/test_rest_bad_input.py; how fast the refusals are is
measured by benchmarks/bad_input.py, not here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pytest_nginmesh.cluster.local.apiserver import ApiServer
from pytest_nginmesh.cluster.local.rest.pki import Credentials
from pytest_nginmesh.cluster.local.rest.server import Request, Response, RestApi
from pytest_nginmesh.errors import ManifestError
from pytest_nginmesh.kube import MAX_ALIAS_EXPANSION, MAX_MANIFEST_BYTES, Obj, ObjectKey, key_of, parse_manifests
from pytest_nginmesh.mesh.manifests import FIXTURES, load_fixture

# The classic "billion laughs": 445 bytes of YAML whose aliases expand to 9**9 (387 million) strings.
ALIAS_BOMB = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: laughs-of-billions
data:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
  lols: *i
"""
DEEP_JSON = "[" * 100_000 + "]" * 100_000
MIB = 1024 * 1024


def pod(name: str = "web", namespace: str = "default", container: str = "app") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": container, "image": "nginx"}]}}


def config_map(name: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data}


# -- parsing is bounded -------------------------------------------------------------------------------------------
def test_the_alias_bomb_is_refused_before_it_expands() -> None:
    assert len(ALIAS_BOMB.encode()) == 445
    with pytest.raises(ManifestError, match=f"aliases expand to more than {MAX_ALIAS_EXPANSION} extra nodes"):
        parse_manifests(ALIAS_BOMB, "bomb.yaml")


def test_a_few_aliases_are_fine() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: &d {a: b}\nbinaryData: *d\n"
    (obj,) = parse_manifests(text)
    assert obj["binaryData"] == {"a": "b"}


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(ManifestError, match="refers to the node that holds it"):
        parse_manifests("apiVersion: v1\nkind: List\nitems: &a [*a]\n")


def test_merge_keys_cannot_bomb_either() -> None:
    levels = ["a0: &a0 {k: v}"] + [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: v}}" for i in range(1, 40)]
    with pytest.raises(ManifestError, match="alias bomb"):
        parse_manifests("\n".join(levels))


@pytest.mark.parametrize("text", [DEEP_JSON, '{"a":' * 100_000 + "1" + "}" * 100_000,
                                  "".join(" " * i + "a:\n" for i in range(2000))],
                         ids=["json-array", "json-object", "yaml-block"])
def test_deep_nesting_is_one_line_not_a_recursion_error(text: str) -> None:
    with pytest.raises(ManifestError, match="nests deeper than 100 levels") as refused:
        parse_manifests(text, "deep.json")
    assert len(str(refused.value).splitlines()) == 1


def test_aliases_cannot_nest_deeper_than_the_text() -> None:
    lines = ["l0: &l0 " + "[" * 60 + "]" * 60, "l1: &l1 " + "[" * 60 + "*l0" + "]" * 60]
    with pytest.raises(ManifestError, match="aliases nest deeper than 100 levels"):
        parse_manifests("\n".join(lines))


def test_a_manifest_is_at_most_3_mib() -> None:
    assert MAX_MANIFEST_BYTES == 3 * MIB
    with pytest.raises(ManifestError, match="holds more than 3145728 bytes"):
        parse_manifests("#" * (3 * MIB + 1), "big.yaml")


# -- admission: every object of a request is valid, or none is stored ---------------------------------------------
@pytest.fixture
def api(tmp_path: Path) -> ApiServer:
    info = {"name": "nmunit", "grace": 1.0,
            "addresses": {"pod_cidr": "10.99.0.0/16", "service_cidr": "10.98.0.0/16", "link_cidr": "10.97.0.0/30"}}
    return ApiServer(tmp_path, info)


def stored(api: ApiServer) -> list[str]:
    # The built-in namespaces and the Node the kubelet registers at start are there before any request.
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in api.store.objects()
                  if o["kind"] not in ("Namespace", "Node"))


@pytest.mark.parametrize(("bad", "fragment"), [
    (pod(name="../../../../tmp/x"), 'Pod "../../../../tmp/x" is invalid: metadata.name: Invalid value: "../../'),
    (pod(name="a" * 300), "metadata.name: Invalid value: \"" + "a" * 300 + "\": must be no more than 253 characters"),
    (pod(name="Web"), 'metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of'),
    (pod(namespace="Rel Bad_NS"), 'metadata.namespace: Invalid value: "Rel Bad_NS": a lowercase RFC 1123 label'),
    (pod(container="../../log"), 'spec.containers[0].name: Invalid value: "../../log": a lowercase RFC 1123 label'),
    ({**pod(), "spec": {"containers": [{"name": "app", "image": "x"}], "volumes": [{"name": "../../etc"}]}},
     'spec.volumes[0].name: Invalid value: "../../etc"'),
    (config_map("code", {"../../sitecustomize.py": "x"}), 'data[../../sitecustomize.py]: Invalid value: "../../'),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"../key": "x"}},
     'Secret "s" is invalid: [data[../key]: Invalid value: "../key"'),
    (config_map("big", {"a": "x" * (MIB + 1)}), 'ConfigMap "big" is invalid: : Too long: must have at most 1048576'),
])
def test_an_invalid_object_refuses_the_whole_request(api: ApiServer, bad: Obj, fragment: str) -> None:
    with pytest.raises(ManifestError) as refused:
        api.apply([config_map("fine", {"a": "b"}), bad])
    assert fragment in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1
    assert stored(api) == [], "a refused request stores nothing"


def test_every_invalid_object_is_named(api: ApiServer) -> None:
    with pytest.raises(ManifestError) as refused:
        api.apply([pod(name="../a"), pod(name="ok"), config_map("x", {"..": "y"})])
    assert str(refused.value).startswith('Pod "../a" is invalid: ')
    assert '; ConfigMap "x" is invalid: data[..]: ' in str(refused.value)


def test_valid_objects_are_stored(api: ApiServer) -> None:
    assert api.apply([pod(), config_map("fine", {"nginx.conf": "x" * MIB})]) == [
        {"object": "pod/default/web", "action": "created"}, {"object": "configmap/default/fine", "action": "created"}]


def test_an_initializer_cannot_store_what_admission_refuses(api: ApiServer) -> None:
    """The Initializer PUTs its object back through the REST API, whose updates pass the same admission."""
    (stored,) = [api.store.get(ObjectKey("Pod", "default", "web")) for _ in api.apply([pod()])]
    with pytest.raises(ManifestError, match=re.escape('spec.containers[0].name: Invalid value: "../x"')):
        api.admit(pod(container="../x"), stored)
    kept = api.store.get(ObjectKey("Pod", "default", "web"))
    assert kept is not None and kept["spec"]["containers"][0]["name"] == "app"


def test_the_projects_manifests_pass_admission_unchanged(api: ApiServer) -> None:
    istio, bookinfo, httpbin = (load_fixture(f) for f in ("istio/istio-0.2.12.yaml", "bookinfo/bookinfo.yaml",
                                                           "httpbin/httpbin.yaml"))
    routes = [obj for path in sorted((FIXTURES / "routes").glob("*.yaml"))
              for obj in load_fixture(f"routes/{path.name}")]
    for batch in (istio, bookinfo + httpbin, *([rule] for rule in routes)):
        api.apply(batch)
    for obj in istio + bookinfo + httpbin + routes:
        assert api.store.get(key_of(obj)) is not None, key_of(obj)


# -- the Kubernetes REST API of the daemon goes through the same admission and bounds ------------------------------
@pytest.fixture
def rest(api: ApiServer) -> RestApi:
    return RestApi(api, Credentials(api.state_dir / "pki").create("nmunit", ["127.0.0.1"]), threading.Event())


def rest_post(rest: RestApi, body: bytes, content_type: str = "application/json") -> Response:
    headers = {"authorization": f"Bearer {rest.credentials.token()}", "content-type": content_type,
               "accept": "application/json"}
    return rest.handle(Request("POST", "/api/v1/namespaces/default/configmaps", {}, headers, body))


def test_rest_refusals_carry_the_field_errors_once(rest: RestApi, api: ApiServer) -> None:
    response = rest_post(rest, json.dumps(config_map("x", {"../../k": "v", "..": "w"})).encode())
    assert (response.code, response.body["reason"]) == (422, "Invalid")
    assert response.body["message"].startswith('ConfigMap "x" is invalid: [data[../../k]: Invalid value: "../../k": ')
    assert response.body["message"].count("is invalid") == 1
    assert [c["message"].split(":")[0] for c in response.body["details"]["causes"]] == [
        "data[../../k]", "data[../../k]", "data[..]"]
    assert stored(api) == []


def test_rest_yaml_bodies_are_parsed_within_bounds(rest: RestApi, api: ApiServer) -> None:
    response = rest_post(rest, ALIAS_BOMB.encode(), "application/yaml")
    assert response.code == 400 and "alias bomb" in response.body["message"]
    deep = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: " + "[" * 150 + "]" * 150
    assert "nests deeper than 100 levels" in rest_post(rest, deep.encode(), "application/yaml").body["message"]
    assert stored(api) == []


@pytest.mark.parametrize(("depth", "code"), [(500, 422), (100_000, 400)])
def test_rest_json_bodies_nesting_deep_are_refused(rest: RestApi, api: ApiServer, depth: int, code: int) -> None:
    body = json.dumps(config_map("deep", {})).replace('"data": {}', '"data": ' + "[" * depth + "]" * depth)
    response = rest_post(rest, body.encode())
    assert response.code == code
    assert len(response.body["message"].splitlines()) == 1
    assert stored(api) == []


# -- the CLI: one line, exit 2, bounded memory, before any cluster is asked ----------------------------------------
# Started from a small process, not from this big one: Linux counts the RSS a child had before its exec.
MEASURED = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def run_cli(*args: str, stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], int]:
    """The CLI in a child process, and its peak RSS in KiB (RUSAGE_CHILDREN of the process that waited for it)."""
    result = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, "-m", "pytest_nginmesh.cli", "local",
                             *args], input=stdin, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTEST_NGINMESH_CLUSTER_NAME": "nmnocluster"})
    *output, peak = result.stdout.splitlines()
    result.stdout = "\n".join(output)
    return result, int(peak)


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fragment in result.stderr


@pytest.mark.parametrize(("text", "fragment"), [
    (ALIAS_BOMB, "alias bomb"), (DEEP_JSON, "nests deeper than 100 levels"),
    ("x" * (3 * MIB + 10), "holds more than 3145728 bytes"),
], ids=["alias-bomb", "deep-json", "too-big"])
def test_the_cli_refuses_in_one_line_and_small(tmp_path: Path, text: str, fragment: str) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    result, peak_kib = run_cli("apply", "-f", str(manifest))
    assert_one_line_exit_2(result, fragment)
    assert peak_kib < 150 * 1024, f"the CLI's peak RSS was {peak_kib} KiB"


@pytest.mark.parametrize("verb", ["apply", "delete"])
def test_a_manifest_without_objects_is_refused(verb: str) -> None:
    result, _ = run_cli(verb, "-f", "/dev/null")
    assert_one_line_exit_2(result, "/dev/null holds no Kubernetes object: give a YAML or JSON manifest")
    result, _ = run_cli(verb, "-f", "-", stdin="---\n# nothing\n")
    assert_one_line_exit_2(result, "standard input holds no Kubernetes object")


def test_an_endless_input_is_refused() -> None:
    result, _ = run_cli("apply", "-f", "/dev/zero")
    assert_one_line_exit_2(result, "/dev/zero holds more than 3145728 bytes")


@pytest.mark.parametrize("verb", [["status"], ["down"], ["get", "pods"], ["apply", "-f", "/dev/null"]])
def test_an_empty_cluster_name_is_refused_not_the_default(verb: list[str]) -> None:
    result, _ = run_cli(*verb, "--name", "")
    assert_one_line_exit_2(result, "bad cluster name ''")

