"""The pytest plugin: the ``nginmesh`` option group, settings, and the session cluster fixture."""

from __future__ import annotations

import re
import secrets
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from .checks.sidecar import SidecarExpectations
from .cluster.base import Cluster
from .cluster.local import lifecycle
from .cluster.local.adapter import LocalCluster
from .errors import NginmeshError
from .features import ALL as ALL_FEATURES
from .features import parse_feature_list
from .mesh.applied import AppliedObjects
from .mesh.install import install_mesh
from .profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile
from .settings import (
    AVAILABLE_CLUSTER_KINDS,
    CLUSTER_KINDS,
    Settings,
    Timeouts,
    parse_bool,
    parse_timeout_overrides,
    settings_from_env,
)

settings_key = pytest.StashKey[Settings]()
previous_sigterm_key = pytest.StashKey[object]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nginmesh", "Nginmesh conformance")
    group.addoption("--nginmesh-cluster", dest="nginmesh_cluster", metavar="KIND", default=None,
                    help=f"Cluster to test: {', '.join(CLUSTER_KINDS)} (default: local).")
    group.addoption("--nginmesh-cluster-name", dest="nginmesh_cluster_name", metavar="NAME", default=None,
                    help="Name of the cluster to create or reuse (default: nginmesh).")
    group.addoption("--nginmesh-keep-cluster", dest="nginmesh_keep_cluster", action="store_true", default=None,
                    help="Leave the cluster running after the session, for reuse or debugging.")
    group.addoption("--nginmesh-profile", dest="nginmesh_profile", metavar="PROFILE", default=None,
                    help=f"Mesh profile to judge against: {', '.join(PROFILES)} (default: {DEFAULT_PROFILE}).")
    group.addoption("--nginmesh-supported-features", dest="nginmesh_supported_features", metavar="F,…",
                    default=None, help="Features the implementation supports (default: the profile's claims).")
    group.addoption("--nginmesh-exempt-features", dest="nginmesh_exempt_features", metavar="F,…", default=None,
                    help="Features not to test (skipped, and counted as skipped).")
    group.addoption("--nginmesh-timeout", dest="nginmesh_timeout", metavar="NAME=SECONDS", action="append",
                    default=[], help="Override one timeout, e.g. pod_ready=120 (repeatable).")
    parser.addini("nginmesh_timeouts", "Timeout overrides, NAME=SECONDS each.", type="args", default=[])
    parser.addini("nginmesh_profile", "Mesh profile to judge against.", default="")
    parser.addini("nginmesh_supported_features", "Features the implementation supports.", default="")
    parser.addini("nginmesh_exempt_features", "Features not to test.", default="")
    parser.addini("nginmesh_cluster", "Cluster to test (local, kind, kubeadm, existing).", default="")
    parser.addini("nginmesh_cluster_name", "Name of the cluster to create or reuse.", default="")
    parser.addini("nginmesh_keep_cluster", "Leave the cluster running after the session.", default="")


def build_settings(config: pytest.Config) -> Settings:
    """Defaults < PYTEST_NGINMESH_* environment < ini keys < command-line options."""
    overrides = settings_from_env()
    for field in ("cluster", "cluster_name", "keep_cluster", "profile", "supported_features", "exempt_features"):
        ini = config.getini(f"nginmesh_{field}")
        if ini:
            overrides[field] = convert(f"nginmesh_{field}", field, ini)
        option = config.getoption(f"nginmesh_{field}")
        if option is not None:
            overrides[field] = option if isinstance(option, bool) else convert(f"--nginmesh-{field.replace('_', '-')}",
                                                                               field, option)
    timeouts = overrides.get("timeouts")
    timeouts = parse_timeout_overrides(config.getini("nginmesh_timeouts"), "nginmesh_timeouts",
                                       timeouts if isinstance(timeouts, Timeouts) else None)
    overrides["timeouts"] = parse_timeout_overrides(config.getoption("nginmesh_timeout"), "--nginmesh-timeout",
                                                    timeouts)
    settings = Settings().with_overrides(overrides)
    if settings.cluster not in AVAILABLE_CLUSTER_KINDS:
        raise NginmeshError(f"--nginmesh-cluster={settings.cluster} is not available yet: "
                            "use --nginmesh-cluster=local (the Kubernetes adapters are being built)")
    return settings


def convert(where: str, field: str, raw: str) -> object:
    if field == "keep_cluster":
        return parse_bool(where, raw)
    if field in ("supported_features", "exempt_features"):
        return parse_feature_list(raw, where)
    return raw


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nginmesh_feature(*names): the conformance features a test exercises; "
                            "tests of features the profile does not claim are skipped with the reason")
    try:
        config.stash[settings_key] = build_settings(config)
    except NginmeshError as e:
        raise pytest.UsageError(str(e)) from e
    config.stash[previous_sigterm_key] = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(previous_sigterm_key, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests of features the implementation does not claim (or that are exempted), saying why."""
    settings = config.stash[settings_key]
    for item in items:
        for marker in item.iter_markers("nginmesh_feature"):
            unknown = sorted(set(marker.args) - ALL_FEATURES)
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: unknown feature(s) {', '.join(unknown)} in "
                                        f"@pytest.mark.nginmesh_feature; known: {', '.join(sorted(ALL_FEATURES))}")
            for feature in marker.args:
                if feature in settings.exempt_features:
                    item.add_marker(pytest.mark.skip(reason=f"feature {feature} exempted (--nginmesh-exempt-features)"))
                elif feature not in settings.features:
                    item.add_marker(pytest.mark.skip(
                        reason=f"feature {feature} not claimed by profile {settings.profile}"))


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    # pytest runs every finalizer on KeyboardInterrupt; SIGTERM must not skip the cluster's teardown.
    raise KeyboardInterrupt("SIGTERM")


@pytest.fixture(scope="session")
def nginmesh_settings(pytestconfig: pytest.Config) -> Settings:
    """The session's settings, built from options, ini keys and ``PYTEST_NGINMESH_*`` variables.

    Override this fixture in a conftest.py to set them in code::

        @pytest.fixture(scope="session")
        def nginmesh_settings():
            return Settings(cluster_name="ci", keep_cluster=True)
    """
    return pytestconfig.stash[settings_key]


@pytest.fixture(scope="session")
def mesh_profile(nginmesh_settings: Settings) -> Profile:
    """The mesh profile the suites judge against: images, proxy port and uid (``--nginmesh-profile``)."""
    return get_profile(nginmesh_settings.profile)


@pytest.fixture(scope="session")
def sidecar_expectations(mesh_profile: Profile) -> SidecarExpectations:
    """What every injected pod must look like under the session's profile."""
    return SidecarExpectations(proxy_port=mesh_profile.proxy_port, proxy_uid=mesh_profile.proxy_uid,
                               proxy_image=mesh_profile.proxy_image, init_image=mesh_profile.init_image)


@pytest.fixture(scope="session")
def mesh_cluster(nginmesh_settings: Settings) -> Iterator[Cluster]:
    """A cluster with Istio, Nginmesh and Bookinfo running, shared by the whole session.

    A running cluster of the same name is reused and left running; a cluster this session
    started is torn down at the end (also after Ctrl-C or SIGTERM) unless
    ``--nginmesh-keep-cluster`` is given. Example::

        def test_productpage(mesh_cluster):
            url = mesh_cluster.ingress_url() + "/productpage"
    """
    settings = nginmesh_settings
    started = lifecycle.up(settings)
    try:
        cluster = LocalCluster(settings)
        if started:
            install_mesh(cluster, settings.timeouts)
        yield cluster
    finally:
        if started and not settings.keep_cluster:
            lifecycle.down(settings)


def label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")


@pytest.fixture
def isolated_namespace(mesh_cluster: Cluster, nginmesh_settings: Settings, request: pytest.FixtureRequest,
                       ) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards, waiting until its pods are gone.

    Example::

        def test_something(mesh_cluster, isolated_namespace):
            mesh_cluster.apply([...objects with metadata.namespace = isolated_namespace...])
    """
    name = f"nginmesh-{secrets.token_hex(4)}"
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": name, "labels": {"created-by": "pytest-nginmesh",
                                                       "test": label_value(request.node.name)}}}
    mesh_cluster.apply([namespace])
    try:
        yield name
    finally:
        mesh_cluster.delete([namespace])
        mesh_cluster.wait_pods_gone(name, nginmesh_settings.timeouts.pod_ready)


@pytest.fixture
def mesh_rules(mesh_cluster: Cluster, nginmesh_settings: Settings) -> Iterator[AppliedObjects]:
    """Apply route rules for one test; they are removed afterwards, and both times the data plane
    is waited for (every proxy acknowledges the new config), never slept on.

    Example::

        def test_all_v1(mesh_rules):
            mesh_rules.apply("routes/route-rule-all-v1.yaml")
    """
    applied = AppliedObjects(mesh_cluster, nginmesh_settings.timeouts.convergence)
    try:
        yield applied
    finally:
        applied.remove_all()
