"""The pytest plugin: the ``nginmesh`` option group, settings, and the session cluster fixture."""

from __future__ import annotations

import re
import secrets
import signal
from collections.abc import Callable, Iterator
from types import FrameType

import pytest

from .checks.sidecar import SidecarExpectations
from .cluster.base import Cluster
from .cluster.provider import Provider, make_provider
from .errors import NginmeshError
from .features import ALL as ALL_FEATURES
from .mesh.applied import AppliedObjects
from .mesh.install import mesh_on_local
from .mesh.on_kubernetes import mesh_on_kubernetes
from .profiles import DEFAULT_PROFILE, PROFILES, Profile
from .settings import (
    CLUSTER_KINDS,
    Settings,
    Timeouts,
    convert,
    parse_timeout_overrides,
    settings_from_env,
)

settings_key = pytest.StashKey[Settings]()
provider_key = pytest.StashKey[Provider]()
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
    kube = parser.getgroup("nginmesh-kubernetes", "Nginmesh conformance on Kubernetes (kind, kubeadm, existing)")
    for name, metavar, help_ in KUBERNETES_OPTIONS:
        if metavar:
            kube.addoption(f"--nginmesh-{name}", dest=f"nginmesh_{name.replace('-', '_')}", metavar=metavar,
                           default=None, help=help_)
        else:
            kube.addoption(f"--nginmesh-{name}", dest=f"nginmesh_{name.replace('-', '_')}", action="store_true",
                           default=None, help=help_)
    parser.addini("nginmesh_timeouts", "Timeout overrides, NAME=SECONDS each.", type="args", default=[])
    for field, help_ in INI_KEYS.items():
        parser.addini(f"nginmesh_{field}", help_, default="")


KUBERNETES_OPTIONS = (
    ("k8s-version", "VERSION", "Kubernetes version of a kind or kubeadm cluster (default: 1.13 for "
                               "Initializer profiles, the newest known for webhook ones)."),
    ("node-image", "IMAGE", "kind node image (default: the pinned kindest/node image of --nginmesh-k8s-version)."),
    ("kind-bin", "PATH", "kind binary (default: kind on PATH; downloaded only when neither exists)."),
    ("kubeconfig", "PATH", "kubeconfig of an existing or kubeadm cluster (default: $KUBECONFIG, ~/.kube/config)."),
    ("context", "NAME", "kubeconfig context to use (default: the current context)."),
    ("allowed-contexts", "C,…", "Refuse any context not in this list (guards clusters that must not be touched)."),
    ("install", "", "Install Istio, Nginmesh and Bookinfo on an existing cluster (removed again afterwards)."),
    ("release", "VERSION", "Nginmesh release to install: 0.2.12, 0.3.0 or 0.7.1 (default: the profile's)."),
    ("release-dir", "DIR", "Directory holding the release tarballs, for air-gapped runs (no downloads)."),
    ("proxy-image", "IMAGE", "Proxy image to inject instead of the release's (release qualification)."),
    ("init-image", "IMAGE", "Init image to inject instead of the release's (release qualification)."),
    ("debug-image", "IMAGE", "Image of the node helper pods that read pods' iptables (needs sh, nsenter, "
                             "iptables-save; default: the init image)."),
)
SETTING_OPTIONS = ("cluster", "cluster_name", "keep_cluster", "profile", "supported_features", "exempt_features",
                   *(name.replace("-", "_") for name, _, _ in KUBERNETES_OPTIONS))
INI_KEYS = {
    "profile": "Mesh profile to judge against.",
    "supported_features": "Features the implementation supports.",
    "exempt_features": "Features not to test.",
    "cluster": "Cluster to test (local, kind, kubeadm, existing).",
    "cluster_name": "Name of the cluster to create or reuse.",
    "keep_cluster": "Leave the cluster running after the session.",
    **{name.replace("-", "_"): help_ for name, _, help_ in KUBERNETES_OPTIONS},
}


def build_settings(config: pytest.Config) -> Settings:
    """Defaults < PYTEST_NGINMESH_* environment < ini keys < command-line options."""
    overrides = settings_from_env()
    for field in SETTING_OPTIONS:
        ini = config.getini(f"nginmesh_{field}")
        if ini:
            overrides[field] = convert(field, ini, f"nginmesh_{field}")
        option = config.getoption(f"nginmesh_{field}")
        if option is not None:
            overrides[field] = option if isinstance(option, bool) else convert(
                field, option, f"--nginmesh-{field.replace('_', '-')}")
    timeouts = overrides.get("timeouts")
    timeouts = parse_timeout_overrides(config.getini("nginmesh_timeouts"), "nginmesh_timeouts",
                                       timeouts if isinstance(timeouts, Timeouts) else None)
    overrides["timeouts"] = parse_timeout_overrides(config.getoption("nginmesh_timeout"), "--nginmesh-timeout",
                                                    timeouts)
    return Settings().with_overrides(overrides)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nginmesh_feature(*names): the conformance features a test exercises; "
                            "tests of features the profile does not claim are skipped with the reason")
    try:
        config.stash[settings_key] = build_settings(config)
    except NginmeshError as e:
        raise pytest.UsageError(str(e)) from e
    settings = config.stash[settings_key]
    if settings.cluster != "local":
        try:
            config.stash[provider_key] = make_provider(settings, settings.mesh_profile, progress_line(config))
        except NginmeshError as e:
            raise pytest.UsageError(str(e)) from e
    config.stash[previous_sigterm_key] = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def progress_line(config: pytest.Config) -> Callable[[str], None]:
    """Progress of long steps (cluster creation, installs) as lines in the terminal."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"nginmesh: {line}")

    return write


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
                        reason=f"feature {feature} not claimed by profile {settings.mesh_profile.name}"))


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
    return nginmesh_settings.mesh_profile


@pytest.fixture(scope="session")
def sidecar_expectations(mesh_profile: Profile, nginmesh_settings: Settings) -> SidecarExpectations:
    """What every injected pod must look like under the session's profile (and image overrides)."""
    return SidecarExpectations.for_profile(mesh_profile, nginmesh_settings.proxy_image, nginmesh_settings.init_image)


@pytest.fixture(scope="session")
def mesh_cluster(nginmesh_settings: Settings, pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """A cluster with Istio, Nginmesh and Bookinfo running, shared by the whole session.

    A running cluster of the same name is reused and left running; a cluster this session
    started is torn down at the end (also after Ctrl-C or SIGTERM) unless
    ``--nginmesh-keep-cluster`` is given. On an existing Kubernetes cluster, only what the
    session installed (``--nginmesh-install``) is removed. Example::

        def test_productpage(mesh_cluster):
            url = mesh_cluster.ingress_url() + "/productpage"
    """
    settings = nginmesh_settings
    mesh = (mesh_on_local(settings) if settings.cluster == "local"
            else mesh_on_kubernetes(settings, pytestconfig.stash[provider_key], progress_line(pytestconfig)))
    with mesh as cluster:
        yield cluster


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
    # Webhook releases inject only into namespaces labelled istio-injection=enabled; Initializers everywhere.
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": name, "labels": {"created-by": "pytest-nginmesh", "istio-injection": "enabled",
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
