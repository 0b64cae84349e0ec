"""Rendered kind and kubeadm configs: API shapes, admission flags per version, golden copies, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_nginmesh.cli import main
from pytest_nginmesh.cluster.render import admission_args, api_server_fields, kind_config, kubeadm_config, to_yaml
from pytest_nginmesh.cluster.versions import CURRENT_K8S, KubeVersion, kind_kubeadm_api_version
from pytest_nginmesh.errors import UsageError
from pytest_nginmesh.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ROOT / "tests" / "data" / "k8s-shapes"
VERSIONS = [KubeVersion(1, 9), KubeVersion(1, 13), CURRENT_K8S]
K8S_PROFILES = ["nginmesh-0.2.12", "nginmesh-0.3.0", "nginmesh-0.7.1"]
COMBINATIONS = [(v, p) for v in VERSIONS for p in K8S_PROFILES
                if PROFILES[p].injection == "webhook" or v.minor_version <= (1, 13)]
SCALARS = {"string": str, "integer": int, "boolean": bool}


def shape_errors(value: Any, shape: Any, definitions: dict[str, Any], path: str = "") -> list[str]:
    """Every unknown field and wrong type in ``value`` against a shape of tests/data/k8s-shapes."""
    if shape == "any":
        return []
    if isinstance(shape, str):
        ok = isinstance(value, SCALARS[shape]) and not (shape == "integer" and isinstance(value, bool))
        return [] if ok else [f"{path or '.'}: {type(value).__name__} where {shape} belongs"]
    if "ref" in shape:
        return shape_errors(value, definitions[shape["ref"]], definitions, path)
    if "list" in shape:
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} where a list belongs"]
        return [e for i, item in enumerate(value)
                for e in shape_errors(item, shape["list"], definitions, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return [f"{path or '.'}: {type(value).__name__} where an object belongs"]
    if "map" in shape:
        return [e for key, item in value.items()
                for e in shape_errors(item, shape["map"], definitions, f"{path}.{key}")]
    fields = shape["object"]
    errors = [f"{path}.{key}: unknown field" for key in value if key not in fields]
    return errors + [e for key, item in value.items() if key in fields
                     for e in shape_errors(item, fields[key], definitions, f"{path}.{key}")]


def check_shape(doc: dict[str, Any]) -> None:
    group, _, version = doc["apiVersion"].partition("/")
    shapes = json.loads((SHAPES / f"{group.split('.')[0]}-{version}.json").read_text(encoding="utf-8"))
    assert doc["kind"] in shapes["kinds"], f"{doc['apiVersion']} has no kind {doc['kind']}"
    assert shape_errors(doc, shapes["kinds"][doc["kind"]], shapes["definitions"]) == []


def ids(combination: tuple[KubeVersion, str]) -> str:
    return f"{combination[0]}-{combination[1]}"


# -- the shape checker can fail -------------------------------------------------------------------------

def test_checker_rejects_unknown_fields_and_wrong_types() -> None:
    shapes = json.loads((SHAPES / "kubeadm-v1beta4.json").read_text(encoding="utf-8"))
    cluster = shapes["kinds"]["ClusterConfiguration"]
    bad = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration", "apiServerExtraArgs": {},
           "networking": {"podSubnet": 16}, "apiServer": {"extraArgs": {"a": "b"}}}
    assert shape_errors(bad, cluster, shapes["definitions"]) == [
        ".apiServerExtraArgs: unknown field",
        ".networking.podSubnet: int where string belongs",
        ".apiServer.extraArgs: dict where a list belongs",
    ]


# -- kubeadm --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("combination", COMBINATIONS, ids=ids)
@pytest.mark.parametrize("address", [None, "10.1.2.3"])
def test_kubeadm_config_fits_its_api(combination: tuple[KubeVersion, str], address: str | None) -> None:
    v, profile = combination
    docs = kubeadm_config(v, PROFILES[profile], advertise_address=address)
    for doc in docs:
        check_shape(doc)
    main_doc = docs[-1]
    assert main_doc["kubernetesVersion"] == f"stable-{v}"
    assert main_doc["networking"] == {"podSubnet": "192.168.0.0/16"}
    if v.minor_version < (1, 11):
        assert [d["kind"] for d in docs] == ["MasterConfiguration"]
        assert main_doc["apiServerExtraArgs"] == admission_args(v, PROFILES[profile])
        assert main_doc.get("api") == ({"advertiseAddress": address} if address else None)
    else:
        assert [d["kind"] for d in docs] == (["InitConfiguration"] if address else []) + ["ClusterConfiguration"]
        if address:
            assert docs[0]["localAPIEndpoint"] == {"advertiseAddress": address}


def test_kubeadm_1_13_initializer_extra_args() -> None:
    [cluster] = kubeadm_config(KubeVersion(1, 13), PROFILES["nginmesh-0.2.12"])
    assert cluster["apiVersion"] == "kubeadm.k8s.io/v1beta1"
    assert cluster["apiServer"] == {"extraArgs": {
        "enable-admission-plugins": "Initializers,NodeRestriction",
        "runtime-config": "admissionregistration.k8s.io/v1alpha1=true"}}


def test_kubeadm_1_11_and_1_12_speak_their_alpha_apis() -> None:
    for minor, api in ((11, "v1alpha2"), (12, "v1alpha3")):
        docs = kubeadm_config(KubeVersion(1, minor), PROFILES["nginmesh-0.2.12"], advertise_address="10.0.0.9")
        for doc in docs:
            check_shape(doc)
        assert docs[-1]["apiVersion"] == f"kubeadm.k8s.io/{api}"
        assert docs[-1]["apiServerExtraArgs"]["enable-admission-plugins"] == "Initializers,NodeRestriction"
    init, _ = kubeadm_config(KubeVersion(1, 12), PROFILES["nginmesh-0.2.12"], advertise_address="10.0.0.9")
    assert init["apiEndpoint"] == {"advertiseAddress": "10.0.0.9"}


def test_v1beta4_extra_args_are_a_list_of_names_and_values() -> None:
    assert api_server_fields("kubeadm.k8s.io/v1beta4", {"a": "1", "b": "2"}) == {
        "apiServer": {"extraArgs": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}}
    assert api_server_fields("kubeadm.k8s.io/v1beta3", {"a": "1"}) == {"apiServer": {"extraArgs": {"a": "1"}}}
    assert api_server_fields("kubeadm.k8s.io/v1beta4", {}) == {}


def test_kubernetes_version_exact_when_given() -> None:
    assert kubeadm_config(KubeVersion(1, 31, 2), PROFILES["nginmesh-0.7.1"])[0]["kubernetesVersion"] == "v1.31.2"


# -- admission flags ------------------------------------------------------------------------------------

def test_admission_args_per_version() -> None:
    initializer, webhook = PROFILES["nginmesh-0.2.12"], PROFILES["nginmesh-0.7.1"]
    assert admission_args(KubeVersion(1, 9), initializer) == {
        "admission-control": "Initializers,NamespaceLifecycle,LimitRanger,ServiceAccount,PersistentVolumeLabel,"
                             "DefaultStorageClass,ValidatingAdmissionWebhook,ResourceQuota,DefaultTolerationSeconds,"
                             "MutatingAdmissionWebhook",
        "runtime-config": "admissionregistration.k8s.io/v1alpha1=true"}
    for minor in (10, 13):
        assert admission_args(KubeVersion(1, minor), initializer) == {
            "enable-admission-plugins": "Initializers,NodeRestriction",
            "runtime-config": "admissionregistration.k8s.io/v1alpha1=true"}
    nine = admission_args(KubeVersion(1, 9), webhook)["admission-control"].split(",")
    assert "MutatingAdmissionWebhook" in nine and "Initializers" not in nine
    assert admission_args(KubeVersion(1, 10), webhook) == {}
    assert admission_args(CURRENT_K8S, webhook) == {}
    assert admission_args(KubeVersion(1, 13), PROFILES["local"]) == admission_args(KubeVersion(1, 13), initializer)


@pytest.mark.parametrize("render", [admission_args, kubeadm_config, kind_config])
def test_incompatible_combinations_are_refused(render: Any) -> None:
    with pytest.raises(UsageError, match=re.escape("Kubernetes 1.14 removed")):
        render(CURRENT_K8S, PROFILES["nginmesh-0.3.0"])
    with pytest.raises(UsageError, match=re.escape("Kubernetes 1.9 introduced")):
        render(KubeVersion(1, 8), PROFILES["nginmesh-0.7.1"])


# -- kind -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("combination", [c for c in COMBINATIONS if c[0].minor_version >= (1, 11)], ids=ids)
def test_kind_config_fits_its_api(combination: tuple[KubeVersion, str]) -> None:
    v, profile = combination
    config = kind_config(v, PROFILES[profile])
    check_shape(config)
    [node] = config["nodes"]
    assert node["role"] == "control-plane" and node["image"].startswith(f"kindest/node:v{v}.")
    args = admission_args(v, PROFILES[profile])
    if not args:
        assert "kubeadmConfigPatches" not in config
        return
    [text] = config["kubeadmConfigPatches"]
    patch = yaml.safe_load(text)
    check_shape(patch)
    assert patch["apiVersion"] == kind_kubeadm_api_version(v)
    assert patch["kind"] == "ClusterConfiguration"
    assert patch["apiServer"]["extraArgs"] == args


def test_kind_1_9_is_refused() -> None:
    with pytest.raises(UsageError, match=re.escape("1.9 has no kindest/node image")):
        kind_config(KubeVersion(1, 9), PROFILES["nginmesh-0.2.12"])
    with pytest.raises(UsageError, match=re.escape("kind cannot run Kubernetes 1.9")):
        kind_config(KubeVersion(1, 9), PROFILES["nginmesh-0.2.12"], "example/node:1.9")


def test_kind_1_11_patches_the_master_configuration() -> None:
    [text] = kind_config(KubeVersion(1, 11), PROFILES["nginmesh-0.2.12"])["kubeadmConfigPatches"]
    patch = yaml.safe_load(text)
    check_shape(patch)
    assert (patch["apiVersion"], patch["kind"]) == ("kubeadm.k8s.io/v1alpha2", "MasterConfiguration")
    assert patch["apiServerExtraArgs"]["enable-admission-plugins"] == "Initializers,NodeRestriction"


def test_kind_node_image_override() -> None:
    config = kind_config(KubeVersion(1, 13), PROFILES["nginmesh-0.7.1"], "registry.example/node:v1.13.0")
    assert config["nodes"] == [{"role": "control-plane", "image": "registry.example/node:v1.13.0"}]


# -- YAML and golden copies -----------------------------------------------------------------------------

def test_to_yaml_multi_document_and_literal_patches() -> None:
    assert to_yaml([{"a": 1}, {"b": 2}]) == "a: 1\n---\nb: 2\n"
    text = to_yaml(kind_config(KubeVersion(1, 13), PROFILES["nginmesh-0.2.12"]))
    assert "kubeadmConfigPatches:\n- |\n  apiVersion: kubeadm.k8s.io/v1beta1\n" in text


def golden_cases() -> list[tuple[Path, str, KubeVersion, str]]:
    cases = []
    for kind in ("kind", "kubeadm"):
        for path in sorted((ROOT / "fixtures" / kind).glob("*.yaml")):
            _, version, profile = path.stem.split("-", 2)
            cases.append((path, kind, KubeVersion.parse(version), profile))
    return cases


def test_golden_copies_cover_the_matrix() -> None:
    names = {path.name for path, *_ in golden_cases()}
    expected = {f"kubeadm-{v}-{p}.yaml" for v, p in COMBINATIONS}
    expected |= {f"kind-{v}-{p}.yaml" for v, p in COMBINATIONS if v.minor_version >= (1, 11)}
    assert names == expected


@pytest.mark.parametrize(("path", "kind", "version", "profile"), golden_cases(), ids=lambda c: getattr(c, "name", ""))
def test_golden_copy_equals_render_output(path: Path, kind: str, version: KubeVersion, profile: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = [line for line in lines if line.startswith("#")]
    assert header[0] == f"# Generated by: nginmesh render {kind}-config --k8s-version {version} --profile {profile}\n"
    rendered = (kind_config(version, PROFILES[profile]) if kind == "kind"
                else kubeadm_config(version, PROFILES[profile]))
    assert "".join(lines[len(header):]) == to_yaml(rendered)


# -- the CLI --------------------------------------------------------------------------------------------

def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_kind_config_defaults_to_nginmesh_0_2_12(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "render", "kind-config", "--k8s-version", "1.13")
    assert (code, err) == (0, "")
    assert yaml.safe_load(out) == kind_config(KubeVersion(1, 13), PROFILES["nginmesh-0.2.12"])


def test_cli_kind_config_node_image(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", "kind-config", "--k8s-version", "1.37", "--profile", "nginmesh-0.7.1",
                       "--node-image", "kindest/node:v1.37.0")
    assert code == 0
    assert yaml.safe_load(out)["nodes"][0]["image"] == "kindest/node:v1.37.0"


def test_cli_kubeadm_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "render", "kubeadm-config", "--k8s-version", "1.13", "--profile", "nginmesh-0.3.0",
                         "--advertise-address", "10.0.0.5")
    assert (code, err) == (0, "")
    expected = kubeadm_config(KubeVersion(1, 13), PROFILES["nginmesh-0.3.0"], advertise_address="10.0.0.5")
    assert list(yaml.safe_load_all(out)) == expected


@pytest.mark.parametrize(("argv", "message"), [
    (["kubeadm-config", "--k8s-version", "1.x"], "bad Kubernetes version '1.x' for --k8s-version"),
    (["kind-config", "--k8s-version", "1.20"], "which Kubernetes 1.14 removed: use --k8s-version 1.13 or lower, "
                                               "or --profile nginmesh-0.7.1 (webhook)"),
    (["kind-config", "--k8s-version", "1.9"], "1.9 has no kindest/node image: use nginmesh render kubeadm-config "
                                              "or pass --node-image"),
    (["kubeadm-config", "--k8s-version", "1.13", "--profile", "nope"], "unknown profile 'nope'"),
    (["kind-config"], "the following arguments are required: --k8s-version"),
])
def test_cli_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                             message: str) -> None:
    try:
        code, out, err = run(capsys, "render", *argv)
    except SystemExit as e:  # argparse's own usage errors
        code, captured = int(str(e.code)), capsys.readouterr()
        out, err = captured.out, captured.err
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and message in err
