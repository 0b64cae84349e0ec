"""Sidecar injection (pytest_nginmesh.mesh.injection) compared with a pod recorded from a real Istio 0.2.12 cluster."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_nginmesh.errors import ManifestError
from pytest_nginmesh.injection_policy import INJECT_ANNOTATION, STATUS_ANNOTATION
from pytest_nginmesh.kube import Obj, read_manifest_file
from pytest_nginmesh.mesh.injection import InjectConfig, MeshConfig, inject, wants_injection
from pytest_nginmesh.profiles import get_profile

REPO = Path(__file__).resolve().parents[2]
ISTIO_MANIFEST = REPO / "fixtures" / "istio" / "istio-0.2.12.yaml"
BOOKINFO_MANIFEST = REPO / "fixtures" / "bookinfo" / "bookinfo.yaml"
SEED_POD = REPO / "tests" / "data" / "seed-reviews-v3-pod.yaml"
ISTIO_VOLUMES = ("istio-envoy", "istio-certs")


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}"
    return matches[0]


def container(pod_spec: Obj, name: str, key: str = "containers") -> Obj:
    matches: list[Obj] = [c for c in pod_spec.get(key) or [] if c["name"] == name]
    assert len(matches) == 1, f"expected exactly one {key} entry named {name}"
    return matches[0]


def edited_configmap(configmap: Obj, edit: Callable[[dict[str, Any]], None]) -> Obj:
    """A copy of the istio-inject ConfigMap whose ``config`` YAML went through ``edit``."""
    result = copy.deepcopy(configmap)
    config = yaml.safe_load(result["data"]["config"])
    edit(config)
    result["data"]["config"] = yaml.safe_dump(config)
    return result


def annotate(obj: Obj, value: str) -> None:
    obj.setdefault("metadata", {}).setdefault("annotations", {})[INJECT_ANNOTATION] = value


@pytest.fixture(scope="module")
def istio_objects() -> list[Obj]:
    return read_manifest_file(str(ISTIO_MANIFEST))


@pytest.fixture(scope="module")
def inject_configmap(istio_objects: list[Obj]) -> Obj:
    return find(istio_objects, "ConfigMap", "istio-inject")


@pytest.fixture(scope="module")
def config(inject_configmap: Obj) -> InjectConfig:
    return InjectConfig.from_configmap(inject_configmap)


@pytest.fixture(scope="module")
def mesh(istio_objects: list[Obj], config: InjectConfig) -> MeshConfig:
    return MeshConfig.from_configmap(find(istio_objects, "ConfigMap", config.mesh_config_map_name))


@pytest.fixture
def reviews_v3() -> Obj:
    """A fresh copy of the bookinfo reviews-v3 Deployment for every test."""
    return find(read_manifest_file(str(BOOKINFO_MANIFEST)), "Deployment", "reviews-v3")


@pytest.fixture(scope="module")
def seed_pod() -> Obj:
    (pod,) = read_manifest_file(str(SEED_POD))
    return pod


@pytest.fixture
def injected(reviews_v3: Obj, config: InjectConfig, mesh: MeshConfig) -> Obj:
    return inject(reviews_v3, config, mesh)


@pytest.fixture
def injected_spec(injected: Obj) -> Obj:
    spec: Obj = injected["spec"]["template"]["spec"]
    return spec


# -- the fixture ConfigMap -------------------------------------------------------------------------


def test_config_is_read_from_the_istio_inject_configmap(config: InjectConfig) -> None:
    assert config.policy == "enabled"
    assert config.namespaces == ("",)
    assert config.init_image == "nginmesh/proxy_init:0.2.12"
    assert config.proxy_image == "nginmesh/proxy_debug:0.2.12"
    assert config.version == "0.2.12"
    assert config.image_pull_policy == "Always"
    assert config.debug_mode is True
    assert config.include_ip_ranges == ""


def test_reviews_v3_is_selected_for_injection(reviews_v3: Obj, config: InjectConfig) -> None:
    assert wants_injection(reviews_v3, config)


# -- the injected workload against the recorded pod ------------------------------------------------


def test_container_order_matches_seed(injected_spec: Obj, seed_pod: Obj) -> None:
    assert [c["name"] for c in injected_spec["containers"]] == [c["name"] for c in seed_pod["spec"]["containers"]]
    assert [c["name"] for c in injected_spec["initContainers"]] == ["istio-init"]


def test_proxy_image_and_pull_policy_match_seed(injected_spec: Obj, seed_pod: Obj) -> None:
    proxy, seed = container(injected_spec, "istio-proxy"), container(seed_pod["spec"], "istio-proxy")
    assert proxy["image"] == seed["image"] == "nginmesh/proxy_debug:0.2.12"
    assert proxy["imagePullPolicy"] == seed["imagePullPolicy"]


def test_proxy_args_match_seed_exactly(injected_spec: Obj, seed_pod: Obj) -> None:
    assert container(injected_spec, "istio-proxy")["args"] == container(seed_pod["spec"], "istio-proxy")["args"]


def test_proxy_env_names_and_field_paths_match_seed(injected_spec: Obj, seed_pod: Obj) -> None:
    def fields(c: Obj) -> list[tuple[str, str]]:
        return [(e["name"], e["valueFrom"]["fieldRef"]["fieldPath"]) for e in c["env"]]

    proxy, seed = container(injected_spec, "istio-proxy"), container(seed_pod["spec"], "istio-proxy")
    assert fields(proxy) == fields(seed) == [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("INSTANCE_IP", "status.podIP"),
    ]
    assert proxy["env"] == seed["env"]


def test_proxy_security_context_matches_seed(injected_spec: Obj, seed_pod: Obj) -> None:
    security = container(injected_spec, "istio-proxy")["securityContext"]
    assert security == container(seed_pod["spec"], "istio-proxy")["securityContext"]
    assert security == {"privileged": True, "readOnlyRootFilesystem": False, "runAsUser": 1337}


def test_proxy_volume_mounts_match_seed(injected_spec: Obj, seed_pod: Obj) -> None:
    seed_mounts = [m for m in container(seed_pod["spec"], "istio-proxy")["volumeMounts"]
                   if m["name"] in ISTIO_VOLUMES]
    assert container(injected_spec, "istio-proxy")["volumeMounts"] == seed_mounts
    assert [m["name"] for m in seed_mounts] == list(ISTIO_VOLUMES)


def test_init_container_matches_seed(injected_spec: Obj, seed_pod: Obj) -> None:
    init = container(injected_spec, "istio-init", "initContainers")
    seed = container(seed_pod["spec"], "istio-init", "initContainers")
    assert init["image"] == seed["image"] == "nginmesh/proxy_init:0.2.12"
    assert init["imagePullPolicy"] == seed["imagePullPolicy"]
    assert init["args"] == seed["args"] == ["-p", "15001", "-u", "1337"]
    assert init["securityContext"] == seed["securityContext"]
    assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    assert init["securityContext"]["privileged"] is True


def test_volumes_match_seed(injected_spec: Obj, seed_pod: Obj) -> None:
    seed_volumes = {v["name"]: v for v in seed_pod["spec"]["volumes"] if v["name"] in ISTIO_VOLUMES}
    volumes = {v["name"]: v for v in injected_spec["volumes"]}
    assert volumes == seed_volumes
    assert volumes["istio-envoy"]["emptyDir"] == {"medium": "Memory"}
    assert volumes["istio-certs"]["secret"]["secretName"] == "istio.default"
    assert volumes["istio-certs"]["secret"]["optional"] is True


def test_status_annotation_on_workload_and_template(injected: Obj, seed_pod: Obj) -> None:
    expected = seed_pod["metadata"]["annotations"][STATUS_ANNOTATION]
    assert expected == "injected-version-0.2.12"
    assert injected["metadata"]["annotations"][STATUS_ANNOTATION] == expected
    assert injected["spec"]["template"]["metadata"]["annotations"][STATUS_ANNOTATION] == expected


def test_app_container_is_left_as_it_was(reviews_v3: Obj, injected_spec: Obj) -> None:
    assert injected_spec["containers"][0] == reviews_v3["spec"]["template"]["spec"]["containers"][0]


def test_certs_secret_follows_the_service_account(reviews_v3: Obj, config: InjectConfig, mesh: MeshConfig) -> None:
    reviews_v3["spec"]["template"]["spec"]["serviceAccountName"] = "bookinfo"
    volumes = {v["name"]: v for v in inject(reviews_v3, config, mesh)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["istio-certs"]["secret"]["secretName"] == "istio.bookinfo"


def test_injecting_does_not_mutate_the_input(reviews_v3: Obj, config: InjectConfig, mesh: MeshConfig) -> None:
    before = copy.deepcopy(reviews_v3)
    result = inject(reviews_v3, config, mesh)
    assert reviews_v3 == before
    assert result != before


# -- who is injected -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "no", "off", "n", "maybe", "disabled"])
def test_workload_opt_out_prevents_injection(reviews_v3: Obj, config: InjectConfig, value: str) -> None:
    # Pilot 0.2.x injectRequired: any value other than y/yes/true/on means "do not inject".
    annotate(reviews_v3, value)
    assert not wants_injection(reviews_v3, config)


def test_pod_template_only_opt_out_is_still_injected(reviews_v3: Obj, config: InjectConfig) -> None:
    # The Initializer reads the annotation from the workload's own metadata, never from its pod template.
    annotate(reviews_v3["spec"]["template"], "false")
    assert wants_injection(reviews_v3, config)


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "istio-system"])
def test_ignored_namespaces_are_never_injected(reviews_v3: Obj, config: InjectConfig, namespace: str) -> None:
    reviews_v3["metadata"]["namespace"] = namespace
    annotate(reviews_v3, "true")
    assert not wants_injection(reviews_v3, config)


def test_a_webhook_release_reads_the_pod_templates_annotation(reviews_v3: Obj, config: InjectConfig) -> None:
    annotate(reviews_v3["spec"]["template"], "false")
    assert not wants_injection(reviews_v3, config, get_profile("nginmesh-0.7.1").injection_policy)


def test_host_network_workload_is_not_injected(reviews_v3: Obj, config: InjectConfig) -> None:
    reviews_v3["spec"]["template"]["spec"]["hostNetwork"] = True
    assert not wants_injection(reviews_v3, config)


def test_injected_workload_is_not_injected_again(injected: Obj, config: InjectConfig) -> None:
    assert not wants_injection(injected, config)


def test_status_annotation_on_the_template_alone_counts_as_injected(reviews_v3: Obj, config: InjectConfig) -> None:
    reviews_v3["spec"]["template"].setdefault("metadata", {})["annotations"] = {STATUS_ANNOTATION: config.status}
    assert not wants_injection(reviews_v3, config)


@pytest.mark.parametrize(("annotation", "expected"), [(None, False), ("true", True), ("false", False)])
def test_disabled_policy_injects_only_on_request(
    reviews_v3: Obj, inject_configmap: Obj, annotation: str | None, expected: bool
) -> None:
    config = InjectConfig.from_configmap(edited_configmap(inject_configmap, lambda c: c.update(policy="disabled")))
    assert config.policy == "disabled"
    if annotation is not None:
        annotate(reviews_v3, annotation)
    assert wants_injection(reviews_v3, config) is expected


@pytest.mark.parametrize(
    ("namespaces", "workload_namespace", "expected"),
    [
        (["bookinfo"], None, False),
        (["bookinfo"], "default", False),
        (["bookinfo"], "bookinfo", True),
        (["default"], None, True),
        (["default", "bookinfo"], "bookinfo", True),
    ],
)
def test_namespaces_list_restricts_injection(
    reviews_v3: Obj, inject_configmap: Obj, namespaces: list[str], workload_namespace: str | None, expected: bool
) -> None:
    config = InjectConfig.from_configmap(
        edited_configmap(inject_configmap, lambda c: c.update(namespaces=namespaces)))
    if workload_namespace is not None:
        reviews_v3["metadata"]["namespace"] = workload_namespace
    assert wants_injection(reviews_v3, config) is expected


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "Job", "DaemonSet"])
def test_workload_kinds_are_injected(reviews_v3: Obj, config: InjectConfig, kind: str) -> None:
    reviews_v3["kind"] = kind
    assert wants_injection(reviews_v3, config)


def test_pod_is_not_injected(seed_pod: Obj, config: InjectConfig) -> None:
    pod = copy.deepcopy(seed_pod)
    del pod["metadata"]["annotations"][STATUS_ANNOTATION]
    assert not wants_injection(pod, config)


def test_service_is_not_injected(config: InjectConfig) -> None:
    service = find(read_manifest_file(str(BOOKINFO_MANIFEST)), "Service", "reviews")
    assert not wants_injection(service, config)


# -- parameters of the ConfigMap -------------------------------------------------------------------


def test_include_ip_ranges_adds_the_i_flag(
    reviews_v3: Obj, inject_configmap: Obj, mesh: MeshConfig
) -> None:
    cidrs = "10.0.0.0/8,172.16.0.0/12"
    config = InjectConfig.from_configmap(
        edited_configmap(inject_configmap, lambda c: c["params"].update(includeIPRanges=cidrs)))
    init = container(inject(reviews_v3, config, mesh)["spec"]["template"]["spec"], "istio-init", "initContainers")
    assert init["args"] == ["-p", "15001", "-u", "1337", "-i", cidrs]


def test_istio_0_2_12_proxy_args_have_pilot_on_8080_and_no_auth_policy(reviews_v3: Obj, config: InjectConfig) -> None:
    args = get_profile("nginmesh-0.2.12").proxy_args
    proxy = container(inject(reviews_v3, config, MeshConfig.from_configmap(None, args), args)["spec"]["template"]
                      ["spec"], "istio-proxy")
    assert "--controlPlaneAuthPolicy" not in proxy["args"]
    assert proxy["args"][proxy["args"].index("--discoveryAddress") + 1] == "istio-pilot.istio-system:8080"


def test_the_mesh_configmap_address_wins_over_the_release_default(istio_objects: list[Obj],
                                                                  config: InjectConfig) -> None:
    mesh = MeshConfig.from_configmap(find(istio_objects, "ConfigMap", "istio"),
                                     get_profile("nginmesh-0.2.12").proxy_args)
    assert mesh.discovery_address == "istio-pilot.istio-system:15003"


def test_service_cluster_falls_back_to_istio_proxy_without_an_app_label(reviews_v3: Obj, config: InjectConfig,
                                                                        mesh: MeshConfig) -> None:
    del reviews_v3["spec"]["template"]["metadata"]["labels"]["app"]
    proxy = container(inject(reviews_v3, config, mesh)["spec"]["template"]["spec"], "istio-proxy")
    assert proxy["args"][proxy["args"].index("--serviceCluster") + 1] == "istio-proxy"


def test_verbosity_zero_drops_the_v_flag(reviews_v3: Obj, inject_configmap: Obj, mesh: MeshConfig) -> None:
    config = InjectConfig.from_configmap(
        edited_configmap(inject_configmap, lambda c: c["params"].update(verbosity=0)))
    proxy = container(inject(reviews_v3, config, mesh)["spec"]["template"]["spec"], "istio-proxy")
    assert "-v" not in proxy["args"]


def test_debug_mode_off_runs_the_proxy_unprivileged(
    reviews_v3: Obj, inject_configmap: Obj, mesh: MeshConfig
) -> None:
    config = InjectConfig.from_configmap(
        edited_configmap(inject_configmap, lambda c: c["params"].update(debugMode=False)))
    proxy = container(inject(reviews_v3, config, mesh)["spec"]["template"]["spec"], "istio-proxy")
    assert proxy["securityContext"] == {"runAsUser": 1337}


def _drop_init_image(config: dict[str, Any]) -> None:
    del config["params"]["initImage"]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(_drop_init_image, id="no-initImage"),
        pytest.param(lambda c: c.pop("params"), id="no-params"),
        pytest.param(lambda c: c.update(policy="sometimes"), id="unknown-policy"),
        pytest.param(lambda c: c["params"].update(verbosity="loud"), id="verbosity-not-a-number"),
    ],
)
def test_malformed_inject_config_raises_manifest_error(
    inject_configmap: Obj, edit: Callable[[dict[str, Any]], None]
) -> None:
    with pytest.raises(ManifestError, match="istio-inject"):
        InjectConfig.from_configmap(edited_configmap(inject_configmap, edit))


def test_inject_config_that_is_not_yaml_raises_manifest_error(inject_configmap: Obj) -> None:
    broken = copy.deepcopy(inject_configmap)
    broken["data"]["config"] = "policy: [enabled\nparams: {"
    with pytest.raises(ManifestError, match="istio-inject"):
        InjectConfig.from_configmap(broken)


def test_quoted_false_debug_mode_is_refused_not_read_as_true(inject_configmap: Obj) -> None:
    configmap = edited_configmap(inject_configmap, lambda c: c["params"].update(debugMode="false"))
    with pytest.raises(ManifestError, match="debugMode must be true or false"):
        InjectConfig.from_configmap(configmap)
