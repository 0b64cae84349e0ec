"""Kubernetes' name, key and size rules with Kubernetes' messages (pytest_nginmesh.validation)."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest

from pytest_nginmesh.kube import CLUSTER_SCOPED_KINDS, Obj, read_manifest_file
from pytest_nginmesh.mesh.injection import InjectConfig, MeshConfig, inject
from pytest_nginmesh.mesh.manifests import FIXTURES
from pytest_nginmesh.validation import (
    FieldError,
    go_quote,
    invalid_message,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_label_value,
    is_path_segment_name,
    is_port_name,
    is_qualified_name,
    object_errors,
    shape_problem,
)

# The messages exactly as kube-apiserver prints them (kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/
# util/validation/validation.go: dns1123SubdomainErrorMsg and dns1123LabelErrMsg through RegexError).
SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
CONFIG_KEY_MESSAGE = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  "
    "or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
LONG = "a" * 300


def pod(**changes: object) -> Obj:
    obj: Obj = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "nginx", "volumeMounts": [{"name": "data",
                                                                                   "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "configMap": {"name": "settings"}}]},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = obj
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return obj


def config_map(data: dict[str, str], name: str = "settings") -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def messages(obj: Obj) -> list[str]:
    return [str(e) for e in object_errors(obj, CLUSTER_SCOPED_KINDS)]


# -- the single rules ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a", "web", "reviews-v1", "1abc", "a" * 63])
def test_dns1123_label_accepts(name: str) -> None:
    assert is_dns1123_label(name) == []


@pytest.mark.parametrize(("name", "expected"), [
    ("../x", [LABEL_MESSAGE]),
    ("Rel Bad_NS", [LABEL_MESSAGE]),
    ("a.b", ["must not contain dots"]),
    ("a" * 64, ["must be no more than 63 characters"]),
    ("-a", [LABEL_MESSAGE]),
    ("", [LABEL_MESSAGE]),
    ("abc\n", [LABEL_MESSAGE]),  # Go's ^…$ takes the whole text: no trailing newline slips through
])
def test_dns1123_label_refuses_with_the_kubernetes_message(name: str, expected: list[str]) -> None:
    assert is_dns1123_label(name) == expected


@pytest.mark.parametrize("name", ["web", "reviews.v1", "a" * 253, "istio-system.svc"])
def test_dns1123_subdomain_accepts(name: str) -> None:
    assert is_dns1123_subdomain(name) == []


@pytest.mark.parametrize(("name", "expected"), [
    ("../x", [SUBDOMAIN_MESSAGE]),
    ("a/b", [SUBDOMAIN_MESSAGE]),
    ("..", [SUBDOMAIN_MESSAGE]),
    ("Web", [SUBDOMAIN_MESSAGE]),
    ("a" * 254, ["must be no more than 253 characters"]),
    ("A" * 300, ["must be no more than 253 characters", SUBDOMAIN_MESSAGE]),
])
def test_dns1123_subdomain_refuses(name: str, expected: list[str]) -> None:
    assert is_dns1123_subdomain(name) == expected


def test_dns1035_label_needs_a_leading_letter() -> None:
    assert is_dns1035_label("productpage") == []
    assert is_dns1035_label("9080-web") == [
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
        "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation "
        "is '[a-z]([-a-z0-9]*[a-z0-9])?')"]


@pytest.mark.parametrize(("name", "expected"), [
    ("http", []), ("http-9080", []), ("a" * 15, []),
    ("a" * 16, ["must be no more than 15 characters"]),
    ("9080", ["must contain at least one letter (a-z)"]),
    ("Http", ["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"]),
    ("a--b", ["must not contain consecutive hyphens"]),
    ("-ab", ["must not begin or end with a hyphen"]),
])
def test_port_names_are_iana_service_names(name: str, expected: list[str]) -> None:
    assert is_port_name(name) == expected


@pytest.mark.parametrize(("key", "expected"), [
    ("nginx.conf", []), ("KEY_NAME", []), ("a" * 253, []), ("..data-not", ["must not start with '..'"]),
    (".", ["must not be '.'"]),
    ("..", ["must not be '..'"]),
    ("../x", [CONFIG_KEY_MESSAGE, "must not start with '..'"]),
    ("a/b", [CONFIG_KEY_MESSAGE]),
    ("a" * 254, ["must be no more than 253 characters"]),
    ("sp ace", [CONFIG_KEY_MESSAGE]),
])
def test_config_map_keys(key: str, expected: list[str]) -> None:
    assert is_config_map_key(key) == expected


@pytest.mark.parametrize(("key", "ok"), [
    ("app", True), ("app.kubernetes.io/name", True), ("MyName", True), ("a" * 63, True),
    ("a" * 64, False), ("/name", False), ("a/b/c", False), ("Example.com/x", False), ("-x", False), ("", False),
])
def test_qualified_names(key: str, ok: bool) -> None:
    assert (is_qualified_name(key) == []) is ok


def test_qualified_name_messages_name_the_part() -> None:
    assert is_qualified_name("/x") == ["prefix part must be non-empty"]
    assert is_qualified_name("ex.com/" + "a" * 64) == ["name part must be no more than 63 characters"]


@pytest.mark.parametrize(("value", "ok"), [("", True), ("v1", True), ("my_value", True), ("a" * 64, False),
                                           ("v 1", False), ("-v", False)])
def test_label_values(value: str, ok: bool) -> None:
    assert (is_label_value(value) == []) is ok


@pytest.mark.parametrize(("name", "ok"), [("PYTHONPATH", True), ("my.env-name", True), ("1ABC", True),
                                          ("A B", True), ("", False), ("A=B", False), ("A\nB", False),
                                          ("Ä", False)])
def test_env_var_names_follow_the_relaxed_rule(name: str, ok: bool) -> None:
    assert (is_env_var_name(name) == []) is ok


def test_path_segment_names_of_rbac_objects() -> None:
    assert is_path_segment_name("system:controller:deployment") == []
    assert is_path_segment_name("..") == ["may not be '..'"]
    assert is_path_segment_name("a/b%") == ["may not contain '/'", "may not contain '%'"]


@pytest.mark.parametrize(("text", "quoted"), [
    ("../x", '"../x"'), ('a"b', '"a\\"b"'), ("a\nb", '"a\\nb"'), ("a\u2028b", '"a\\u2028b"'), ("\x00", '"\\x00"'),
    ("é", '"é"'),
])
def test_values_are_quoted_as_go_does_on_one_line(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted
    assert len(go_quote(text).splitlines()) == 1


def test_nesting_depth() -> None:
    nested: object = "leaf"
    for _ in range(100):
        nested = [nested]
    assert shape_problem(nested) is None
    assert shape_problem([nested]) == "nests deeper than 100 levels; no Kubernetes object does"


def test_shared_values_are_counted_where_they_appear() -> None:
    bomb: object = ["lol"] * 9
    for _ in range(8):
        bomb = [bomb] * 9  # what yaml.safe_load makes of the alias bomb: 9**9 strings, shared
    assert shape_problem({"data": bomb}) == "holds more than 2000000 values once written out (a YAML alias bomb?)"
    assert shape_problem({"data": ["x"] * 1_000_000}) is None


# -- whole objects: every name that reaches a file path of the local cluster ---------------------------------------
@pytest.mark.parametrize(("obj", "error"), [
    (pod(metadata__name="../x"), f'metadata.name: Invalid value: "../x": {SUBDOMAIN_MESSAGE}'),
    (pod(metadata__name="a/b"), f'metadata.name: Invalid value: "a/b": {SUBDOMAIN_MESSAGE}'),
    (pod(metadata__name=LONG), f'metadata.name: Invalid value: "{LONG}": must be no more than 253 characters'),
    (pod(metadata__name="Web"), f'metadata.name: Invalid value: "Web": {SUBDOMAIN_MESSAGE}'),
    (pod(metadata__namespace="Rel Bad_NS"), f'metadata.namespace: Invalid value: "Rel Bad_NS": {LABEL_MESSAGE}'),
    (pod(metadata__namespace="../../etc"), f'metadata.namespace: Invalid value: "../../etc": {LABEL_MESSAGE}'),
    (pod(spec__containers__0__name="../../log"),
     f'spec.containers[0].name: Invalid value: "../../log": {LABEL_MESSAGE}'),
    (pod(spec__containers__0__name="App"), f'spec.containers[0].name: Invalid value: "App": {LABEL_MESSAGE}'),
    (pod(spec__volumes__0__name="../../../etc"),
     f'spec.volumes[0].name: Invalid value: "../../../etc": {LABEL_MESSAGE}'),
    (pod(spec__volumes__0__name="a" * 300),
     f'spec.volumes[0].name: Invalid value: "{"a" * 300}": must be no more than 63 characters'),
    (pod(spec__containers__0__volumeMounts__0__name="../x"), 'spec.containers[0].volumeMounts[0].name: Not found: '
                                                             '"../x"'),
    (pod(spec__containers__0__volumeMounts__0__subPath="../../x"),
     'spec.containers[0].volumeMounts[0].subPath: Invalid value: "../../x": must not contain \'..\''),
    (pod(spec__volumes__0__configMap={"name": "settings", "items": [{"key": "a", "path": "/etc/passwd"}]}),
     'spec.volumes[0].configMap.items[0].path: Invalid value: "/etc/passwd": must be a relative path'),
    (config_map({"../../escape.py": "x"}),
     f'data[../../escape.py]: Invalid value: "../../escape.py": {CONFIG_KEY_MESSAGE}'),
    (config_map({"..": "x"}), "data[..]: Invalid value: \"..\": must not be '..'"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a/b": "x"}},
     f'data[a/b]: Invalid value: "a/b": {CONFIG_KEY_MESSAGE}'),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
      "data": {"../k": base64.b64encode(b"x").decode()}}, f'data[../k]: Invalid value: "../k": {CONFIG_KEY_MESSAGE}'),
    ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Rel Bad_NS"}},
     f'metadata.name: Invalid value: "Rel Bad_NS": {LABEL_MESSAGE}'),
])
def test_names_that_reach_paths_are_refused_with_the_kubernetes_message(obj: Obj, error: str) -> None:
    assert error in messages(obj)


def test_a_deployment_is_checked_down_to_its_pod_template() -> None:
    deployment = {"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"template": {"metadata": {"labels": {"app": "web app"}}, "spec": pod()["spec"]}}}
    deployment["spec"]["template"]["spec"]["containers"][0]["name"] = "../x"
    assert messages(deployment) == [
        'spec.template.metadata.labels: Invalid value: "web app": a valid label must be an empty string or consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
        "'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?"
        "[A-Za-z0-9])?')",
        f'spec.template.spec.containers[0].name: Invalid value: "../x": {LABEL_MESSAGE}',
    ]


def test_the_message_reads_as_kube_apiservers() -> None:
    bad = pod(metadata__name="../x")
    assert invalid_message(bad, object_errors(bad)) == (
        f'Pod "../x" is invalid: metadata.name: Invalid value: "../x": {SUBDOMAIN_MESSAGE}')
    worse = pod(metadata__name="../x", spec__containers__0__name="../y")
    assert invalid_message(worse, object_errors(worse)).startswith('Pod "../x" is invalid: [metadata.name: ')
    assert invalid_message(worse, object_errors(worse)).endswith(f'"../y": {LABEL_MESSAGE}]')
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "../d"}, "spec": {}}
    assert invalid_message(deployment, object_errors(deployment)).startswith('Deployment.apps "../d" is invalid: [')


def test_duplicates_and_missing_parts() -> None:
    obj = pod()
    obj["spec"]["initContainers"] = [{"name": "app", "image": "x"}]
    obj["spec"]["volumes"].append({"name": "data"})
    obj["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 80},
                                             {"name": "http", "containerPort": 0}]
    obj["spec"]["containers"][0]["env"] = [{"name": "A=B"}, {"value": "x"}]
    del obj["spec"]["containers"][0]["image"]
    assert messages(obj) == [
        'spec.volumes[1].name: Duplicate value: "data"',
        'spec.containers[0].name: Duplicate value: "app"',
        "spec.containers[0].image: Required value",
        'spec.containers[0].ports[1].name: Duplicate value: "http"',
        "spec.containers[0].ports[1].containerPort: Required value",
        'spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only '
        "of printable ASCII characters other than '='",
        "spec.containers[0].env[1].name: Required value",
    ]
    assert messages(pod(spec={})) == ["spec.containers: Required value"]
    assert messages(pod(metadata={})) == ["metadata.name: Required value: name or generateName is required"]


def test_wrong_types_are_errors_not_crashes() -> None:
    assert messages(pod(metadata__name=5)) == ["metadata.name: Invalid value: 5: must be a string"]
    assert messages(pod(spec__containers={"name": "x"})) == [
        "spec.containers: Invalid value: object: must be a list"]
    assert messages(pod(metadata__labels={"app": 1})) == ["metadata.labels[app]: Invalid value: 1: must be a string"]
    assert [str(e) for e in object_errors(["not", "an", "object"])] == [
        "<object>: Invalid value: array: must be a Kubernetes object (a mapping)"]
    assert messages({"kind": "Pod", "metadata": {"name": "x"}}) == ["apiVersion: Required value"]


def test_services_take_dns1035_names_and_named_ports() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "9lives"},
               "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}, {"port": 70000, "name": "Web"}]}}
    assert [m.split(": ")[0] for m in messages(service)] == [
        "metadata.name", "spec.ports[0].name", "spec.ports[1].name", "spec.ports[1].port"]
    assert "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive" in messages(service)


def test_config_map_and_secret_size_limits() -> None:
    assert messages(config_map({"a": "x" * (1024 * 1024)})) == []
    assert messages(config_map({"a": "x" * (1024 * 1024), "b": "y"})) == [
        ": Too long: must have at most 1048576 bytes"]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"k": base64.b64encode(b"\0" * (1024 * 1024 + 1)).decode()}}
    assert messages(secret) == ["data: Too long: must have at most 1048576 bytes"]
    secret["data"] = {"k": "not base64!"}
    assert messages(secret) == ['data[k]: Invalid value: "<value omitted>": must be base64-encoded bytes']


def test_annotations_total_at_most_256_kib() -> None:
    assert messages(pod(metadata__annotations={"a": "x" * (256 * 1024 - 1)})) == []
    assert messages(pod(metadata__annotations={"a": "x" * (256 * 1024)})) == [
        "metadata.annotations: Too long: must have at most 262144 bytes"]


def test_field_errors_without_a_value() -> None:
    assert str(FieldError("spec.containers", "Required value")) == "spec.containers: Required value"


# -- what the project applies passes unchanged ---------------------------------------------------------------------
MANIFESTS = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("**/*.yaml")
                   if p.parent.name not in ("kind", "kubeadm"))  # cluster configs, not objects to apply


@pytest.mark.parametrize("relative", MANIFESTS)
def test_the_projects_fixtures_are_valid(relative: str) -> None:
    for obj in read_manifest_file(str(FIXTURES / relative)):
        assert object_errors(obj, CLUSTER_SCOPED_KINDS) == [], obj["metadata"]["name"]


def test_the_seeds_recorded_injected_pod_is_valid() -> None:
    (recorded,) = read_manifest_file(str(Path(__file__).parents[1] / "data" / "seed-reviews-v3-pod.yaml"))
    assert object_errors(recorded) == []


def test_workloads_stay_valid_once_injected() -> None:
    istio = read_manifest_file(str(FIXTURES / "istio" / "istio-0.2.12.yaml"))
    configmaps = {o["metadata"]["name"]: o for o in istio if o["kind"] == "ConfigMap"}
    config = InjectConfig.from_configmap(configmaps["istio-inject"])
    mesh = MeshConfig.from_configmap(configmaps[config.mesh_config_map_name])
    deployments = [o for o in read_manifest_file(str(FIXTURES / "bookinfo" / "bookinfo.yaml"))
                   if o["kind"] == "Deployment"]
    for deployment in deployments:
        injected = inject(copy.deepcopy(deployment), config, mesh)
        assert injected != deployment
        assert object_errors(injected) == []
