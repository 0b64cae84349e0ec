"""The settings object and its PYTEST_NGINMESH_* overrides (pytest_nginmesh.settings)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from pytest_nginmesh.errors import UsageError
from pytest_nginmesh.settings import Settings, Timeouts, settings_from_env


def test_defaults_are_valid() -> None:
    settings = Settings()
    assert settings.cluster == "local"
    assert settings.cluster_name == "nginmesh"
    assert settings.keep_cluster is False
    assert settings.state_dir == Path("/run/nginmesh/nginmesh")
    assert settings.timeouts == Timeouts()


def test_unknown_cluster_kind_lists_the_choices() -> None:
    with pytest.raises(UsageError, match=r"unknown cluster kind 'minikube': choose one of local, kind, kubeadm"):
        Settings(cluster="minikube")


@pytest.mark.parametrize("name", ["Nginmesh", "ngin_mesh", "-mesh", "mesh-", "", "a" * 33, "mesh.1"])
def test_bad_cluster_name_says_what_is_allowed(name: str) -> None:
    with pytest.raises(UsageError, match=r"bad cluster name .*: use 1-32 lowercase letters, digits and '-'"):
        Settings(cluster_name=name)


@pytest.mark.parametrize("name", ["a", "ci-1", "a" * 32, "0x"])
def test_good_cluster_names_are_accepted(name: str) -> None:
    assert Settings(cluster_name=name).cluster_name == name


@pytest.mark.parametrize(
    ("field", "value"),
    [("pod_cidr", "10.213.0.0/33"), ("pod_cidr", "pods"), ("service_cidr", "10.214.0.1/16"),
     ("link_cidr", "fd00::/64")],
)
def test_bad_cidr_names_the_setting_and_gives_an_example(field: str, value: str) -> None:
    message = f"bad {field} '{value}': give an IPv4 network such as 10.213.0.0/16"
    with pytest.raises(UsageError, match=re.escape(message)):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_overlapping_ranges_name_both_ranges() -> None:
    with pytest.raises(UsageError, match=r"pod_cidr 10\.0\.0\.0/8 overlaps service_cidr 10\.214\.0\.0/16: "
                                         r"give disjoint ranges"):
        Settings(pod_cidr="10.0.0.0/8")


def test_link_overlapping_the_service_range_is_rejected() -> None:
    with pytest.raises(UsageError, match=re.escape("service_cidr 10.214.0.0/16 overlaps link_cidr 10.214.0.0/30")):
        Settings(link_cidr="10.214.0.0/30")


@pytest.mark.parametrize("link", ["10.212.0.0/31", "10.212.0.0/32"])
def test_too_small_link_asks_for_a_30(link: str) -> None:
    with pytest.raises(UsageError, match=re.escape(f"link_cidr {link} is too small: give a /30 or larger")):
        Settings(link_cidr=link)


def test_with_overrides_rejects_unknown_names() -> None:
    with pytest.raises(UsageError, match=r"unknown setting.*colour"):
        Settings().with_overrides({"colour": "blue"})


def test_with_overrides_validates_the_result() -> None:
    with pytest.raises(UsageError, match="bad cluster name"):
        Settings().with_overrides({"cluster_name": "Bad"})


# -- environment -----------------------------------------------------------------------------------


def test_environment_overrides() -> None:
    overrides = settings_from_env({
        "PYTEST_NGINMESH_CLUSTER_NAME": "ci",
        "PYTEST_NGINMESH_KEEP_CLUSTER": "yes",
        "PYTEST_NGINMESH_TIMEOUT_POD_READY": "5",
        "PYTEST_NGINMESH_STATE_ROOT": "/tmp/nm-state",
        "UNRELATED": "x",
    })
    settings = Settings().with_overrides(overrides)
    assert settings.cluster_name == "ci"
    assert settings.keep_cluster is True
    assert settings.timeouts.pod_ready == 5.0
    assert settings.state_dir == Path("/tmp/nm-state/ci")
    unchanged = {f.name for f in fields(Timeouts)} - {"pod_ready"}
    assert all(getattr(settings.timeouts, n) == getattr(Timeouts(), n) for n in unchanged)


def test_empty_environment_changes_nothing() -> None:
    assert settings_from_env({}) == {}


def test_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_NGINMESH_CLUSTER_NAME", "from-env")
    monkeypatch.setenv("PYTEST_NGINMESH_TIMEOUT_EXEC", "2.5")
    overrides = settings_from_env()
    assert overrides["cluster_name"] == "from-env"
    assert isinstance(overrides["timeouts"], Timeouts)
    assert overrides["timeouts"].exec == 2.5


@pytest.mark.parametrize(("raw", "expected"), [("yes", True), ("1", True), ("On", True), ("no", False),
                                               ("0", False), ("", False)])
def test_keep_cluster_accepts_common_booleans(raw: str, expected: bool) -> None:
    assert settings_from_env({"PYTEST_NGINMESH_KEEP_CLUSTER": raw})["keep_cluster"] is expected


def test_bad_boolean_names_the_setting() -> None:
    with pytest.raises(UsageError, match="bad value 'maybe' for PYTEST_NGINMESH_KEEP_CLUSTER: use true or false"):
        settings_from_env({"PYTEST_NGINMESH_KEEP_CLUSTER": "maybe"})


@pytest.mark.parametrize(("raw", "hint"), [("soon", "give seconds as a number"), ("0", "between 0 and 3600"),
                                           ("-1", "between 0 and 3600"), ("3601", "between 0 and 3600")])
def test_bad_timeout_names_the_variable(raw: str, hint: str) -> None:
    message = f"bad value '{raw}' for PYTEST_NGINMESH_TIMEOUT_POD_READY: give seconds"
    with pytest.raises(UsageError, match=re.escape(message)):
        settings_from_env({"PYTEST_NGINMESH_TIMEOUT_POD_READY": raw})
    with pytest.raises(UsageError, match=hint):
        settings_from_env({"PYTEST_NGINMESH_TIMEOUT_POD_READY": raw})


def test_bad_cluster_name_from_the_environment_fails_when_applied() -> None:
    overrides = settings_from_env({"PYTEST_NGINMESH_CLUSTER_NAME": "Not_Valid"})
    with pytest.raises(UsageError, match="bad cluster name 'Not_Valid'"):
        Settings().with_overrides(overrides)


@pytest.mark.parametrize(("raw", "message"), [
    ("eight", "bad value 'eight' for PYTEST_NGINMESH_CONCURRENCY: give a whole number of requests, e.g. 8"),
    ("0", "bad concurrency 0: give 1 to 64 requests in flight"),
    ("65", "bad concurrency 65: give 1 to 64 requests in flight"),
])
def test_bad_concurrency_says_what_is_allowed(raw: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        Settings().with_overrides(settings_from_env({"PYTEST_NGINMESH_CONCURRENCY": raw}))


def test_concurrency_from_the_environment() -> None:
    assert Settings().with_overrides(settings_from_env({"PYTEST_NGINMESH_CONCURRENCY": "16"})).concurrency == 16
    assert Settings().concurrency == 8


def test_overhead_budget_from_the_option_text_or_the_profile() -> None:
    assert Settings(overhead_budget="p50=2ms, p99.9=1s").budget == {0.5: 0.002, 0.999: 1.0}
    assert Settings().budget == dict(Settings().mesh_profile.overhead_budget)


@pytest.mark.parametrize("text", ["p50=fast", "p100=1ms", "50=1ms", "p50=1h"])
def test_a_bad_overhead_budget_names_the_form(text: str) -> None:
    with pytest.raises(UsageError, match=re.escape(f"bad overhead budget item {text!r}: give QUANTILE=LATENCY items")):
        Settings(overhead_budget=text)
