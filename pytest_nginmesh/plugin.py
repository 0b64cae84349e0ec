"""The pytest plugin: the ``nginmesh`` option group, settings, conformance markers and report, and the
session cluster fixture.

Polite when unused: the cluster machinery (kubernetes, requests, allure) is imported only when a mesh
fixture or a conformance test needs it, options are validated only then, and no signal handler is installed
unless a cluster is brought up.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import pytest

from .errors import NginmeshError
from .features import MARKER, MARKER_HELP, ConformanceTest, declared
from .profiles import DEFAULT_PROFILE, PROFILES, Profile
from .report.document import IMPLEMENTATION_FIELDS
from .report.options import ReportOptions, ensure_writable, parse_implementation, report_directory
from .settings import (
    CLUSTER_KINDS,
    Settings,
    Timeouts,
    convert,
    parse_timeout_overrides,
    settings_from_env,
)
from .workers import (
    EXCLUSIVE_MARKER,
    EXCLUSIVE_MARKER_HELP,
    is_first_worker,
    is_worker,
    mesh_state,
    shared_cluster,
    worker_id,
)

if TYPE_CHECKING:
    from .checks.sidecar import SidecarExpectations
    from .cluster.base import Cluster
    from .cluster.provider import Provider
    from .mesh.applied import AppliedObjects
    from .mesh.bookinfo_instance import BookinfoInstance

settings_key = pytest.StashKey[Settings]()
provider_key: pytest.StashKey[Provider] = pytest.StashKey()
implementation_key = pytest.StashKey[dict[str, str]]()
session_settings_key = pytest.StashKey[Settings]()  # what the nginmesh_settings fixture gave (maybe overridden)
conformance_key = pytest.StashKey[ConformanceTest]()

# Using any of these means a mesh is wanted: only then are the cluster options validated.
MESH_FIXTURES = frozenset({"nginmesh_settings", "mesh_profile", "sidecar_expectations", "mesh_cluster",
                           "isolated_namespace", "mesh_rules"})
# pytest-kind's own options, and what to use instead next to --nginmesh-cluster=kind.
PYTEST_KIND_OPTIONS = {
    "cluster_name": ("--cluster-name", "pytest-kind", "--nginmesh-cluster-name"),
    "keep_cluster": ("--keep-cluster", False, "--nginmesh-keep-cluster"),
    "kind_image": ("--kind-image", None, "--nginmesh-node-image"),
    "kind_bin": ("--kind-bin", None, "--nginmesh-kind-bin"),
    "kubeconfig": ("--kubeconfig", None, "nothing: kind writes the kubeconfig of the cluster it creates"),
    "kind_kubectl_bin": ("--kind-kubectl-bin", None, "nothing: the plugin needs no kubectl for kind"),
}


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
    group.addoption("--nginmesh-concurrency", dest="nginmesh_concurrency", metavar="N", default=None,
                    help="Requests in flight while sampling routes; judged in send order, so the error rates "
                         "stay those of one at a time (default: 8).")
    group.addoption("--nginmesh-overhead-budget", dest="nginmesh_overhead_budget", metavar="pQ=LATENCY,…",
                    default=None, help="Latency the sidecars may add, e.g. p50=10ms,p99=100ms (default: the "
                                       "profile's).")
    group.addoption("--nginmesh-report-dir", dest="nginmesh_report_dir", metavar="DIR", default=None,
                    help="Where the conformance report and diagnostics go (default: reports/).")
    group.addoption("--nginmesh-implementation", dest="nginmesh_implementation", metavar="KEY=VALUE",
                    action="append", default=[],
                    help=f"The implementation under test, for the report: {', '.join(IMPLEMENTATION_FIELDS)} "
                         "(repeatable).")
    kube = parser.getgroup("nginmesh-kubernetes", "Nginmesh conformance on Kubernetes (kind, kubeadm, existing)")
    for name, metavar, help_ in KUBERNETES_OPTIONS:
        if metavar:
            kube.addoption(f"--nginmesh-{name}", dest=f"nginmesh_{name.replace('-', '_')}", metavar=metavar,
                           default=None, help=help_)
        else:
            kube.addoption(f"--nginmesh-{name}", dest=f"nginmesh_{name.replace('-', '_')}", action="store_true",
                           default=None, help=help_)
    parser.addini("nginmesh_timeouts", "Timeout overrides, NAME=SECONDS each.", type="args", default=[])
    parser.addini("nginmesh_report_dir", "Where the conformance report and diagnostics go.", default="")
    parser.addini("nginmesh_implementation", "The implementation under test, KEY=VALUE each.", type="args",
                  default=[])
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
    ("baseline-proxy-image", "IMAGE", "Proxy image to compare the candidate's latency against in the "
                                      "proxy-overhead test (instead of no sidecar): release qualification."),
    ("debug-image", "IMAGE", "Image of the node helper pods that read pods' iptables (needs sh, nsenter, "
                             "iptables-save; default: the init image)."),
)
SETTING_OPTIONS = ("cluster", "cluster_name", "keep_cluster", "profile", "supported_features", "exempt_features",
                   "concurrency", "overhead_budget",
                   *(name.replace("-", "_") for name, _, _ in KUBERNETES_OPTIONS))
INI_KEYS = {
    "profile": "Mesh profile to judge against.",
    "supported_features": "Features the implementation supports.",
    "exempt_features": "Features not to test.",
    "cluster": "Cluster to test (local, kind, kubeadm, existing).",
    "cluster_name": "Name of the cluster to create or reuse.",
    "keep_cluster": "Leave the cluster running after the session.",
    "concurrency": "Requests in flight while sampling routes.",
    "overhead_budget": "Latency the sidecars may add, e.g. p50=10ms,p99=100ms.",
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
    config.addinivalue_line("markers", MARKER_HELP)
    config.addinivalue_line("markers", EXCLUSIVE_MARKER_HELP)
    try:
        implementation = parse_implementation(config.getini("nginmesh_implementation"), "nginmesh_implementation")
        config.stash[implementation_key] = parse_implementation(config.getoption("nginmesh_implementation"),
                                                                "--nginmesh-implementation", implementation)
    except NginmeshError as e:
        raise pytest.UsageError(str(e)) from e


def settings_of(config: pytest.Config) -> Settings:
    """The settings of options, ini keys and environment, built (and validated) on first use."""
    if settings_key not in config.stash:
        try:
            config.stash[settings_key] = build_settings(config)
        except NginmeshError as e:
            raise pytest.UsageError(str(e)) from e
    return config.stash[settings_key]


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    try:
        settings = settings_of(config)
    except pytest.UsageError:
        return None  # said as a usage error once a test needs the mesh
    profile = settings.mesh_profile
    return [f"nginmesh: cluster {settings.cluster} ({settings.cluster_name}), profile {profile.name}, "
            f"Nginmesh {settings.release or profile.nginmesh_version}, Istio {profile.istio_version}, "
            f"{profile.injection} injection",
            f"nginmesh: proxy {settings.proxy_image or profile.proxy_image}, "
            f"init {settings.init_image or profile.init_image}"]


def progress_line(config: pytest.Config) -> Callable[[str], None]:
    """Progress of long steps (cluster creation, installs) as lines in the terminal."""

    def write(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        # Cluster start happens in a fixture, under output capture: step out of it, as live logging does.
        capture = config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            reporter.ensure_newline()
            reporter.write_line(f"nginmesh: {line}")

    return write


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Read every test's conformance marker; when a mesh is wanted, validate the options and the report
    directory now, before any cluster starts, and register the report's bookkeeping."""
    tests: dict[str, ConformanceTest] = {}
    names: dict[str, str] = {}
    for item in items:
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            continue
        try:
            test = declared(marker.args, marker.kwargs, item.nodeid)
        except NginmeshError as e:
            raise pytest.UsageError(str(e)) from e
        base = item.nodeid.split("[")[0]
        if names.setdefault(test.name, base) != base:
            raise pytest.UsageError(f"{item.nodeid}: conformance name {test.name!r} is already "
                                    f"{names[test.name]}'s: give each test a name of its own")
        item.stash[conformance_key] = tests[item.nodeid] = test
        fixturenames = getattr(item, "fixturenames", None)
        if fixturenames is not None and GATE not in fixturenames:
            fixturenames.insert(0, GATE)  # first of all, so a skipped test starts no cluster
    if not tests and not any(MESH_FIXTURES & set(getattr(item, "fixturenames", ())) for item in items):
        return
    settings = settings_of(config)
    if settings.cluster == "kind":
        refuse_pytest_kind(config, items)
    if settings.cluster != "local" and provider_key not in config.stash:
        from .mesh.on_kubernetes import kubernetes_provider

        try:
            config.stash[provider_key] = kubernetes_provider(settings, settings.mesh_profile, progress_line(config))
        except NginmeshError as e:
            raise pytest.UsageError(str(e)) from e
    if tests and not config.option.collectonly:
        register_report(config, tests, items)


def refuse_pytest_kind(config: pytest.Config, items: list[pytest.Item]) -> None:
    """pytest-kind's options and ``kind_cluster`` would act on a cluster of their own, silently: refuse them."""
    for dest, (option, default, instead) in PYTEST_KIND_OPTIONS.items():
        value = config.getoption(dest, default)
        if value != default:
            raise pytest.UsageError(f"{option} is pytest-kind's option and does nothing for "
                                    f"--nginmesh-cluster=kind: use {instead}")
    for item in items:
        if "kind_cluster" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid} uses pytest-kind's kind_cluster, a second cluster beside "
                                    "--nginmesh-cluster=kind's: use the mesh_cluster fixture")


def report_options(config: pytest.Config) -> ReportOptions:
    """Where the report goes (checked writable now, before any cluster starts) and what it says of the
    implementation."""
    directory = report_directory(config.getoption("nginmesh_report_dir"), config.getini("nginmesh_report_dir"),
                                 Path(config.invocation_params.dir))
    try:
        ensure_writable(directory)
    except NginmeshError as e:
        raise pytest.UsageError(str(e)) from e
    return ReportOptions(directory, config.stash[implementation_key])


def register_report(config: pytest.Config, tests: dict[str, ConformanceTest], items: list[pytest.Item]) -> None:
    """The per-test bookkeeping, and (unless this is an xdist worker, whose controller writes it) the report."""
    from .report.session import ConformanceSession, ReportWriter

    options = report_options(config)
    allure = bool(config.getoption("allure_report_dir", None))
    if allure:
        from .report import allure_glue

        for item in items:
            if conformance_key in item.stash:
                allure_glue.label(item, item.stash[conformance_key])

    def settings() -> Settings:
        return config.stash.get(session_settings_key, settings_of(config))

    config.pluginmanager.register(ConformanceSession(config, options, tests, settings, allure), "nginmesh-conformance")
    if not is_worker(config):
        config.pluginmanager.register(ReportWriter(options, settings), "nginmesh-report")


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """On the pytest-xdist controller (which collects nothing), the writer of the one report of all workers."""
    config = session.config
    if config.pluginmanager.has_plugin("dsession") and not config.option.collectonly:
        from .report.session import ReportWriter

        config.pluginmanager.register(ReportWriter(report_options(config), lambda: settings_of(config)),
                                      "nginmesh-report")


GATE = "nginmesh_conformance_gate"


@pytest.fixture
def nginmesh_conformance_gate(request: pytest.FixtureRequest, nginmesh_settings: Settings) -> None:
    """Skip a conformance test whose features are not claimed or are exempted, judged by the
    ``nginmesh_settings`` fixture (so an override in a conftest counts). Put first in every conformance
    test's fixtures by the plugin, so no cluster starts for a test that is skipped."""
    item = request.node
    first = session_settings_key not in item.config.stash
    item.config.stash[session_settings_key] = nginmesh_settings
    if first:
        record_run_metadata(item, nginmesh_settings, request.getfixturevalue("record_testsuite_property"))
    for feature in item.stash[conformance_key].features:
        if feature in nginmesh_settings.exempt_features:
            pytest.skip(f"feature {feature} exempted (--nginmesh-exempt-features)")
        if feature not in nginmesh_settings.features:
            pytest.skip(f"feature {feature} not claimed by profile {nginmesh_settings.mesh_profile.name}")


def record_run_metadata(item: pytest.Item, settings: Settings, record: Callable[[str, object], None]) -> None:
    """The run's metadata as JUnit testsuite properties and, with allure, its environment properties."""
    from .report.document import cluster_description, data_plane

    properties = {"profile": settings.mesh_profile.name,
                  **{f"cluster.{k}": v for k, v in cluster_description(settings).items()},
                  **{f"dataPlane.{k}": v for k, v in data_plane(settings).items()},
                  **{f"implementation.{k}": v for k, v in item.config.stash[implementation_key].items()}}
    for name, value in properties.items():
        record(f"nginmesh.{name}", value)
    alluredir = item.config.getoption("allure_report_dir", None)
    if alluredir:
        from .report import allure_glue

        allure_glue.write_environment(Path(alluredir), properties)


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
    return settings_of(pytestconfig)


@pytest.fixture(scope="session")
def mesh_profile(nginmesh_settings: Settings) -> Profile:
    """The mesh profile the suites judge against: images, proxy port and uid (``--nginmesh-profile``)."""
    return nginmesh_settings.mesh_profile


@pytest.fixture(scope="session")
def sidecar_expectations(mesh_profile: Profile, nginmesh_settings: Settings) -> SidecarExpectations:
    """What every injected pod must look like under the session's profile (and image overrides)."""
    from .checks.sidecar import SidecarExpectations

    return SidecarExpectations.for_profile(mesh_profile, nginmesh_settings.proxy_image, nginmesh_settings.init_image)


@pytest.fixture(scope="session")
def mesh_cluster(nginmesh_settings: Settings, pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """A cluster with Istio, Nginmesh and Bookinfo running, shared by the whole session.

    A complete running cluster of the same name and options is reused and left running (a half-made
    one is rebuilt); a cluster this session started is torn down at the end, and an interrupted or
    failed install removes it at once (also after Ctrl-C or SIGTERM), unless
    ``--nginmesh-keep-cluster`` is given. On an existing Kubernetes cluster, only what the
    session installed (``--nginmesh-install``) is removed. Under pytest-xdist the workers share one
    cluster, torn down once after the last of them (``pytest_nginmesh.workers``). Example::

        def test_productpage(mesh_cluster):
            url = mesh_cluster.ingress_url() + "/productpage"
    """
    from .mesh.install import mesh_on_local
    from .mesh.on_kubernetes import kubernetes_provider, mesh_on_kubernetes

    progress = progress_line(pytestconfig)

    def enter(settings: Settings) -> AbstractContextManager[Cluster]:
        if settings.cluster == "local":
            return mesh_on_local(settings, progress)
        stash = pytestconfig.stash
        validated = stash.get(settings_key, None) == nginmesh_settings and provider_key in stash
        provider = (pytestconfig.stash[provider_key] if validated
                    else kubernetes_provider(nginmesh_settings, nginmesh_settings.mesh_profile, progress))
        return mesh_on_kubernetes(settings, provider, progress)

    previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        with shared_cluster(pytestconfig, nginmesh_settings, enter) as cluster:
            yield cluster
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


@pytest.fixture(autouse=True)
def nginmesh_mesh_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under pytest-xdist, a test that uses the mesh holds the cluster's mesh-state lock: exclusively when
    marked ``mesh_exclusive``, shared otherwise (each worker's route rules touch only its own Bookinfo)."""
    if "mesh_cluster" not in request.fixturenames or not is_worker(request.config):
        yield
        return
    settings = request.getfixturevalue("nginmesh_settings")
    exclusive = request.node.get_closest_marker(EXCLUSIVE_MARKER) is not None
    with mesh_state(request.config, settings, exclusive=exclusive):
        yield


@pytest.fixture(scope="session")
def bookinfo(mesh_cluster: Cluster, nginmesh_settings: Settings, pytestconfig: pytest.Config,
             ) -> Iterator[BookinfoInstance]:
    """The Bookinfo the session's tests use: the one installed with the mesh; under pytest-xdist, for every
    worker after the first, the profile's Bookinfo copied into a namespace of the worker's own (removed
    afterwards), which the ingress serves for a host of its own. Example::

        def test_productpage(bookinfo):
            page = requests.get(bookinfo.url("/productpage"), headers=bookinfo.headers)
    """
    from .mesh.bookinfo_instance import BookinfoInstance, bookinfo_copy

    if is_first_worker(pytestconfig):
        yield BookinfoInstance.installed(mesh_cluster)
        return
    with bookinfo_copy(mesh_cluster, nginmesh_settings.mesh_profile, nginmesh_settings,
                       f"bookinfo-{worker_id(pytestconfig)}",
                       guard=lambda: mesh_state(pytestconfig, nginmesh_settings, exclusive=False)) as instance:
        yield instance


@pytest.fixture
def isolated_namespace(mesh_cluster: Cluster, nginmesh_settings: Settings, request: pytest.FixtureRequest,
                       ) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards, waiting until its pods are gone.

    Example::

        def test_something(mesh_cluster, isolated_namespace):
            mesh_cluster.apply([...objects with metadata.namespace = isolated_namespace...])
    """
    from .mesh.namespaces import namespace_of_its_own

    with namespace_of_its_own(mesh_cluster, nginmesh_settings, request.node.name) as name:
        yield name


@pytest.fixture(scope="module")
def module_namespace(mesh_cluster: Cluster, nginmesh_settings: Settings, request: pytest.FixtureRequest,
                     ) -> Iterator[str]:
    """A namespace shared by the tests of one module (for setup they only read, such as a client pod),
    deleted after the module, waiting until its pods are gone."""
    from .mesh.namespaces import namespace_of_its_own

    with namespace_of_its_own(mesh_cluster, nginmesh_settings, request.module.__name__) as name:
        yield name


@pytest.fixture
def mesh_rules(mesh_cluster: Cluster, bookinfo: BookinfoInstance, nginmesh_settings: Settings,
               ) -> Iterator[AppliedObjects]:
    """Apply route rules for one test, in the namespace of the session's Bookinfo unless they name one; they
    are removed afterwards, and both times the data plane is waited for (every proxy acknowledges the new
    config), never slept on.

    Example::

        def test_all_v1(mesh_rules):
            mesh_rules.apply("routes/route-rule-all-v1.yaml")
    """
    from .mesh.applied import AppliedObjects

    applied = AppliedObjects(mesh_cluster, nginmesh_settings.timeouts.convergence, bookinfo.namespace)
    try:
        yield applied
    finally:
        applied.remove_all()
