"""Mesh profiles: what each release is and promises, stated once, with the upstream source beside each fact.

Releases: Nginmesh 0.2.12 with Istio 0.2.12, 0.3.0 with Istio 0.3.0 (both inject through Istio's Kubernetes
Initializer), v0.7.1 with Istio 0.7.1 (mutating webhook). ``local`` is the embedded cluster's reference mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import bookinfo
from .bookinfo import BookinfoRelease
from .checks.metrics import ISTIO_0_2, ISTIO_0_3, MetricNames
from .errors import ManifestError, UsageError
from .features import ALL
from .injection_policy import PROXY_PORT, PROXY_UID, InjectionPolicy, ProxyArgs

# What the Nginmesh agent's README claims for 0.2.12 / 0.3.0 (nginmesh/nginmesh README.md, "Supported
# features" of the 0.2.12 and 0.3.0 release commits): route rules with weights, header and cookie matches,
# precedence, redirect, rewrite, retries, request timeout and fault abort; fault delay is not claimed. Mixer
# reports come from the NGINX mixer module (nginmesh/nginmesh nginx-mixer-module). The v0.7.1 README
# (nginxinc/nginmesh README.md at v0.7.1) claims the same list.
NGINMESH_CLAIMS = frozenset({
    "sidecar-injection", "traffic-capture", "routing-default", "routing-version", "routing-weighted",
    "routing-header-match", "routing-precedence", "routing-redirect", "routing-rewrite", "routing-retries",
    "routing-request-timeout", "fault-abort", "metrics",
})
# Not a claim of any release but a property of every data plane: judged for every profile.
ALWAYS_JUDGED = frozenset({"proxy-overhead"})

# The Istio 0.2.x/0.3.x Initializer skips the Kubernetes system namespaces and its own (istio/pilot
# platform/kube/inject/initializer.go, ignoredNamespaces) and reads sidecar.istio.io/inject from the metadata
# of the workload it initializes, never from its pod template (initializer.go modifyResource passes the
# workload's ObjectMeta to injectRequired in inject.go).
INITIALIZER_POLICY = InjectionPolicy(frozenset({"kube-system", "kube-public", "istio-system"}), "workload")
# Istio 0.7.1's webhook (istio/istio pilot/pkg/kube/inject/webhook.go at 0.7.1, ignoredNamespaces =
# NamespaceSystem, NamespacePublic) sees the pod being created, so the pod's own annotation counts; it is
# called only for namespaces labelled istio-injection=enabled (nginxinc/nginmesh
# istio/release/install/kubernetes/istio/istio-sidecar-injector.yaml, namespaceSelector).
WEBHOOK_POLICY = InjectionPolicy(frozenset({"kube-system", "kube-public"}), "pod", ("istio-injection", "enabled"))

# Pilot's address in the mesh ConfigMap each Istio release installs (istio/istio install/kubernetes/istio.yaml:
# 0.2.12 "istio-pilot.istio-system:8080"; 0.3.0 "istio-pilot.istio-system:15003", the seed's injected pod);
# --controlPlaneAuthPolicy first appears in the 0.3.0 injector (istio/pilot platform/kube/inject/inject.go).
# --serviceCluster falls back to "istio-proxy" without an app label (inject.go, and nginxinc/nginmesh
# istio/release/install/kubernetes/templates/nginmesh-sidecar-injector-configmap.yaml.tmpl at v0.7.1).
ISTIO_0_2_PROXY_ARGS = ProxyArgs("istio-pilot.istio-system:8080", control_plane_auth_policy=False)
ISTIO_0_3_PROXY_ARGS = ProxyArgs("istio-pilot.istio-system:15003", control_plane_auth_policy=True)
# Istio 0.7.1 (install/kubernetes/istio.yaml, mesh defaultConfig.discoveryAddress); its webhook injects what
# Nginmesh's template says (nginxinc/nginmesh istio/release/install/kubernetes/templates/
# nginmesh-sidecar-injector-configmap.yaml.tmpl at v0.7.1), which passes no --controlPlaneAuthPolicy.
ISTIO_0_7_PROXY_ARGS = ProxyArgs("istio-pilot.istio-system:15007", control_plane_auth_policy=False)
# The injector of each Istio release, by the release (the tag of its image): what it writes on the proxy's
# command line. The embedded cluster's Initializer image runs as its tag says (workloads/initializer.py).
INJECTOR_ARGS = {"0.2.12": ISTIO_0_2_PROXY_ARGS, "0.3.0": ISTIO_0_3_PROXY_ARGS, "0.7.1": ISTIO_0_7_PROXY_ARGS}
LOCAL_INJECTOR = "0.3.0"  # the seed's injected pod: Pilot on 15003, with --controlPlaneAuthPolicy


def injector_args(istio_release: str) -> ProxyArgs:
    """What the injector of ``istio_release`` writes; any other release: the local reference's injector."""
    return INJECTOR_ARGS.get(istio_release, INJECTOR_ARGS[LOCAL_INJECTOR])


# Each release's Bookinfo (its images' tag, failure texts and statuses) is stated in pytest_nginmesh/bookinfo.py.

# The suite asks for a redirect through the ingress. In every release the istio-ingress is Envoy (istio/istio
# install/kubernetes/istio.yaml: istio-ingress runs docker.io/istio/proxy*), whose v1 route redirect answers
# 301, as Nginmesh's own v0.7.1 e2e expects (nginxinc/nginmesh istio/tests/e2e/7_http_redirect_spec.py); the
# agent renders "return 302" only in sidecars (nginmesh/nginmesh istio/agent/nginx/template.go). The local
# ingress is NGINX rendered like a sidecar (pytest_nginmesh/mesh/nginx_routes.py): 302.
ENVOY_INGRESS_REDIRECT = 301
LOCAL_REDIRECT = SIDECAR_REDIRECT = 302
# The agent polls Pilot every 5 s whatever --discoveryRefreshDelay says (nginmesh/nginmesh
# istio/agent/cmd/agent/main.go: pilot.NewWatcher(client, 5*time.Second); the same in 0.3.0 and v0.7.1).
AGENT_REFRESH_PERIOD = 5.0
# The local agent (pytest_nginmesh/workloads/agent.py) is told of every change at once (a long poll) and
# acknowledges its version (Profile.versioned_push); without a change, Pilot answers its poll after this long.
LOCAL_REFRESH_PERIOD = 1.0
# Two NGINX hops (the client's sidecar out, the server's in) cost about a millisecond at the median on a
# 2-core machine (benchmarks/conformance.py); the budget leaves room for a busy CI machine.
DEFAULT_OVERHEAD_BUDGET = ((0.5, 0.010), (0.99, 0.100))


@dataclass(frozen=True)
class RouteRendering:
    """What an agent makes of the mesh in NGINX: how it retries, which parts of a route rule it renders at all,
    and whether it proxies TCP services."""

    # "istio": 1 + attempts tries, each bounded by perTryTimeout (Envoy's semantics); "next-upstream": NGINX's
    # proxy_next_upstream_tries <attempts> over one server line per endpoint, so one endpoint is tried once.
    retries: str
    request_timeout: bool  # httpReqTimeout bounds the request
    fault_delay: bool  # httpFault.delay holds requests back
    # Whether a service port Pilot calls TCP (its name says no HTTP: mesh/nginx_config.http_port) is proxied;
    # without it, a connection to one is closed unanswered.
    tcp_services: bool = True

    def to_config(self) -> dict[str, object]:
        return {"retries": self.retries, "requestTimeout": self.request_timeout, "faultDelay": self.fault_delay,
                "tcpServices": self.tcp_services}

    @classmethod
    def from_config(cls, config: dict[str, object]) -> RouteRendering:
        retries = str(config.get("retries", ISTIO_RENDERING.retries))
        if retries not in RETRY_STYLES:
            raise ManifestError(f"routeRendering.retries {retries!r}: choose one of {', '.join(RETRY_STYLES)}")
        return cls(retries, bool(config.get("requestTimeout", True)), bool(config.get("faultDelay", True)),
                   bool(config.get("tcpServices", True)))


RETRY_STYLES = ("istio", "next-upstream")
ISTIO_RENDERING = RouteRendering("istio", request_timeout=True, fault_delay=True)
# The agent's converter (nginmesh/nginmesh istio/agent/nginx/converter.go, createProxyNextUpstream, at the
# 0.2.12, 0.3.0 and v0.7.1 release commits) turns a route's RetryPolicy into proxy_next_upstream "error http_500
# http_502 http_503 http_504", proxy_next_upstream_timeout <perTryTimeout>ms and proxy_next_upstream_tries
# <NumRetries>, with one server line per endpoint (clusterToUpstream); it reads neither the route's timeout nor
# a fault filter's delay (only FilterFaultConfig.Abort), and template.go sets no proxy_read_timeout.
# Its Pilot client (istio/agent/pilot/client.go, GetConfig) keeps only listeners with an http_connection_manager
# filter and skips the others ("For now, only http traffic is supported"), so no TCP listener reaches the
# stream config: the `map $nginmesh_dest $nginmesh_server` (template.go) has no entry and no default for a TCP
# service, and NGINX closes the connection (READMEs of 0.2.12, 0.3.0 and v0.7.1: "TCP and gRPC traffic is not
# supported"; nginxinc/nginmesh istio/agent/pilot/test/0.3.0: tcp_proxy listeners in, http confs only out).
NGINMESH_RENDERING = RouteRendering("next-upstream", request_timeout=False, fault_delay=False, tcp_services=False)


@dataclass(frozen=True)
class Profile:
    """One implementation at one version, as the suites judge it."""

    name: str
    nginmesh_version: str
    istio_version: str
    hub: str
    proxy_image: str
    init_image: str
    injection: str  # "initializer" or "webhook"
    injection_policy: InjectionPolicy
    injector_release: str  # the Istio release whose injector writes the sidecars (INJECTOR_ARGS)
    features: frozenset[str]
    metrics: MetricNames
    bookinfo: BookinfoRelease
    redirect_status: int
    agent_refresh_period: float  # seconds between an agent's polls of Pilot
    route_rendering: RouteRendering
    proxy_port: int = PROXY_PORT
    proxy_uid: int = PROXY_UID
    # The latency a request may gain through the mesh (client and server sidecars), as (quantile, seconds);
    # --nginmesh-overhead-budget overrides it.
    overhead_budget: tuple[tuple[float, float], ...] = DEFAULT_OVERHEAD_BUDGET
    # Whether Pilot pushes each new config version to the agents (a long poll, answered as soon as the mesh
    # changes) and publishes the version each proxy acknowledges (PROXY_STATUS_CONFIGMAP), as Istio's ADS does
    # from 0.8: the local reference's. The releases' agents poll Envoy v1's REST API on a timer and acknowledge
    # nothing (nginmesh/nginmesh istio/agent/cmd/agent/main.go), so nothing publishes which config a proxy runs.
    versioned_push: bool = False

    @property
    def proxy_args(self) -> ProxyArgs:
        return INJECTOR_ARGS[self.injector_release]

    @property
    def pilot_port(self) -> int:
        """The port Pilot serves discovery on: the one of the discovery address its injector writes."""
        return int(self.proxy_args.discovery_address.rsplit(":", 1)[1])


PROFILES = {
    profile.name: profile
    for profile in (
        # nginmesh/nginmesh install/kubernetes/istio-initializer.yaml (0.2.12-RC2 and 0.3.0 release commits):
        # initImage nginmesh/proxy_init:0.2.12, proxyImage nginmesh/proxy_debug:0.2.12 for both releases.
        Profile("nginmesh-0.2.12", "0.2.12", "0.2.12", "nginmesh", "nginmesh/proxy_debug:0.2.12",
                "nginmesh/proxy_init:0.2.12", "initializer", INITIALIZER_POLICY, "0.2.12",
                NGINMESH_CLAIMS | ALWAYS_JUDGED, ISTIO_0_2, bookinfo.ISTIO_0_2_12, ENVOY_INGRESS_REDIRECT,
                AGENT_REFRESH_PERIOD, NGINMESH_RENDERING),
        Profile("nginmesh-0.3.0", "0.3.0", "0.3.0", "nginmesh", "nginmesh/proxy_debug:0.2.12",
                "nginmesh/proxy_init:0.2.12", "initializer", INITIALIZER_POLICY, "0.3.0",
                NGINMESH_CLAIMS | ALWAYS_JUDGED, ISTIO_0_3, bookinfo.ISTIO_0_3_0, ENVOY_INGRESS_REDIRECT,
                AGENT_REFRESH_PERIOD, NGINMESH_RENDERING),
        # nginxinc/nginmesh istio/release/install/kubernetes/generate-sidecar-config.sh at v0.7.1:
        # NGINMESH_IMAGE_HUB defaults to nginxinc, ISTIO_PROXY_INIT=docker.io/istio/proxy_init:0.7.1; the
        # template injects nginxinc/nginmesh_proxy_debug:0.7.1.
        Profile("nginmesh-0.7.1", "0.7.1", "0.7.1", "nginxinc", "nginxinc/nginmesh_proxy_debug:0.7.1",
                "docker.io/istio/proxy_init:0.7.1", "webhook", WEBHOOK_POLICY, "0.7.1",
                NGINMESH_CLAIMS | ALWAYS_JUDGED, ISTIO_0_3, bookinfo.ISTIO_0_7_1, ENVOY_INGRESS_REDIRECT,
                AGENT_REFRESH_PERIOD, NGINMESH_RENDERING),
        # The embedded cluster: the Nginmesh 0.2.12 images and Istio 0.2.12's Pilot and Mixer, with the 0.3.0
        # Initializer's command line (Pilot on 15003, with --controlPlaneAuthPolicy: the seed's injected pod);
        # Istio's semantics in full.
        Profile("local", "0.2.12", "0.2.12", "nginmesh", "nginmesh/proxy_debug:0.2.12", "nginmesh/proxy_init:0.2.12",
                "initializer", INITIALIZER_POLICY, LOCAL_INJECTOR, ALL, ISTIO_0_3, bookinfo.LOCAL,
                LOCAL_REDIRECT, LOCAL_REFRESH_PERIOD, ISTIO_RENDERING, versioned_push=True),
    )
}
DEFAULT_PROFILE = "local"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}") from None
