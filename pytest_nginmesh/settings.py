"""One frozen settings object, built from options, ini keys and ``PYTEST_NGINMESH_*`` environment."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import UsageError
from .features import parse_feature_list
from .profiles import DEFAULT_PROFILE, Profile, get_profile

CLUSTER_KINDS = ("local", "kind", "kubeadm", "existing")
KUBERNETES_DEFAULT_PROFILE = "nginmesh-0.2.12"
ENV_PREFIX = "PYTEST_NGINMESH_"
# Requests the route suites keep in flight while sampling (checks.routing.check_weights judges them in the
# order they were sent, so the error rates are those of one-at-a-time sampling).
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64
CLUSTER_NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


@dataclass(frozen=True)
class Timeouts:
    """Every bounded wait of the project, in seconds."""

    cluster_up: float = 180.0
    pod_ready: float = 90.0
    convergence: float = 30.0
    api_request: float = 10.0
    exec: float = 30.0
    http_request: float = 10.0
    termination_grace: float = 5.0
    teardown: float = 60.0


@dataclass(frozen=True)
class Settings:
    """What the plugin, the CLI and the local cluster are told to do."""

    cluster: str = "local"
    cluster_name: str = "nginmesh"
    keep_cluster: bool = False
    profile: str = ""  # empty: "local" on the local cluster, KUBERNETES_DEFAULT_PROFILE elsewhere
    supported_features: frozenset[str] | None = None
    exempt_features: frozenset[str] = frozenset()
    state_root: Path = Path("/run/nginmesh")
    pod_cidr: str = "10.213.0.0/16"
    service_cidr: str = "10.214.0.0/16"
    link_cidr: str = "10.212.0.0/30"
    timeouts: Timeouts = field(default_factory=Timeouts)
    concurrency: int = DEFAULT_CONCURRENCY
    overhead_budget: str = ""  # "p50=10ms,p99=100ms"; empty: the profile's
    # Kubernetes clusters (kind, kubeadm, existing)
    kind_bin: Path | None = None
    k8s_version: str | None = None
    node_image: str | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    allowed_contexts: frozenset[str] = frozenset()
    install: bool = False
    release: str | None = None
    release_dir: Path | None = None
    proxy_image: str | None = None
    init_image: str | None = None
    debug_image: str | None = None
    baseline_proxy_image: str | None = None

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTER_KINDS:
            raise UsageError(
                f"unknown cluster kind {self.cluster!r}: choose one of {', '.join(CLUSTER_KINDS)}"
            )
        self.mesh_profile  # noqa: B018 - validates the profile name
        if not CLUSTER_NAME_PATTERN.match(self.cluster_name):
            raise UsageError(
                f"bad cluster name {self.cluster_name!r}: use 1-32 lowercase letters, digits and '-'"
            )
        networks = {}
        for name in ("pod_cidr", "service_cidr", "link_cidr"):
            value = getattr(self, name)
            try:
                networks[name] = ipaddress.IPv4Network(value)
            except ValueError as e:
                raise UsageError(f"bad {name} {value!r}: give an IPv4 network such as 10.213.0.0/16") from e
        parse_overhead_budget(self.overhead_budget)
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"bad concurrency {self.concurrency!r}: give 1 to {MAX_CONCURRENCY} requests in flight")
        if networks["link_cidr"].prefixlen > 30:
            raise UsageError(f"link_cidr {self.link_cidr} is too small: give a /30 or larger")
        names = list(networks)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if networks[a].overlaps(networks[b]):
                    raise UsageError(f"{a} {networks[a]} overlaps {b} {networks[b]}: give disjoint ranges")

    @property
    def features(self) -> frozenset[str]:
        """The features the suites exercise: the profile's claims (or those given), minus exemptions."""
        claimed = self.supported_features if self.supported_features is not None else self.mesh_profile.features
        return claimed - self.exempt_features

    @property
    def mesh_profile(self) -> Profile:
        """The profile given, else "local" on the local cluster and KUBERNETES_DEFAULT_PROFILE elsewhere."""
        return get_profile(self.profile or (DEFAULT_PROFILE if self.cluster == "local" else KUBERNETES_DEFAULT_PROFILE))

    @property
    def budget(self) -> dict[float, float]:
        """The proxy-overhead budget: quantile -> seconds (the option's, else the profile's)."""
        return parse_overhead_budget(self.overhead_budget) or dict(self.mesh_profile.overhead_budget)

    @property
    def state_dir(self) -> Path:
        return self.state_root / self.cluster_name

    def with_overrides(self, values: Mapping[str, object]) -> Settings:
        """Return a copy with the given fields replaced (unknown names are a UsageError)."""
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise UsageError(f"unknown setting(s) {', '.join(sorted(unknown))}")
        return replace(self, **values)  # type: ignore[arg-type]


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise UsageError(f"bad value {value!r} for {name}: use true or false")


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Read ``PYTEST_NGINMESH_<FIELD>`` variables into settings overrides."""
    environ = os.environ if environ is None else environ
    overrides: dict[str, object] = {}
    for f in fields(Settings):
        if f.name == "timeouts":
            continue
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is None:
            continue
        overrides[f.name] = convert(f.name, raw)
    timeout_overrides = {}
    for f in fields(Timeouts):
        raw = environ.get(f"{ENV_PREFIX}TIMEOUT_{f.name.upper()}")
        if raw is not None:
            timeout_overrides[f.name] = parse_seconds(f"{ENV_PREFIX}TIMEOUT_{f.name.upper()}", raw)
    if timeout_overrides:
        overrides["timeouts"] = replace(Timeouts(), **timeout_overrides)
    return overrides


PATH_SETTINGS = frozenset({"state_root", "kind_bin", "kubeconfig", "release_dir"})
BOOL_SETTINGS = frozenset({"keep_cluster", "install"})


def convert(name: str, raw: str, where: str | None = None) -> object:
    """A setting's text (from the environment, an ini key or an option) as the value Settings holds."""
    where = where or ENV_PREFIX + name.upper()
    if name in BOOL_SETTINGS:
        return parse_bool(where, raw)
    if name in ("supported_features", "exempt_features"):
        return parse_feature_list(raw, where)
    if name == "allowed_contexts":
        return frozenset(item.strip() for item in raw.split(",") if item.strip())
    if name in PATH_SETTINGS:
        return Path(raw).expanduser()
    if name == "concurrency":
        try:
            return int(raw)
        except ValueError:
            raise UsageError(f"bad value {raw!r} for {where}: give a whole number of requests, e.g. 8") from None
    return raw


BUDGET_ITEM = re.compile(r"^p(\d{1,2}(?:\.\d+)?)=(\d+(?:\.\d+)?)(ms|s)$")


def parse_overhead_budget(text: str) -> dict[float, float]:
    """``p50=10ms,p99=100ms`` as {0.5: 0.01, 0.99: 0.1}; empty text, an empty budget."""
    budget: dict[float, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = BUDGET_ITEM.match(item)
        if match is None or not 0 < float(match[1]) < 100:
            raise UsageError(f"bad overhead budget item {item!r}: give QUANTILE=LATENCY items such as "
                             "p50=10ms,p99=100ms")
        budget[round(float(match[1]) / 100, 6)] = float(match[2]) / (1000 if match[3] == "ms" else 1)
    return budget


def parse_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError as e:
        raise UsageError(f"bad value {raw!r} for {name}: give seconds as a number") from e
    if not 0 < value <= 3600:
        raise UsageError(f"bad value {raw!r} for {name}: give seconds between 0 and 3600")
    return value


def parse_timeout_overrides(items: list[str], where: str, base: Timeouts | None = None) -> Timeouts:
    """``NAME=SECONDS`` items (e.g. ``pod_ready=120``) applied over the given timeouts."""
    known = {f.name for f in fields(Timeouts)}
    values: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise UsageError(f"{where}: bad timeout {item!r}: "
                             f"give NAME=SECONDS with NAME one of {', '.join(sorted(known))}")
        values[name] = parse_seconds(f"{where} {name}", raw.strip())
    return replace(base or Timeouts(), **values)
