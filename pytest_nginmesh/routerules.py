"""Istio RouteRule (config.istio.io/v1alpha2): a typed model, and the validation an API server applies.

The validation is Pilot 0.2.12's (istio/pilot model/validation.go, ValidateRouteRule and what it calls):
route labels no pod carries, ``destination.service``, ``route[].destination``, ``match.tcp``,
``websocketUpgrade``, any ``attempts`` >= 0 and an abort status from 0 to 600 (or none) are accepted;
upper-case header names, UDP matches and L4 faults are refused. Checks that go further are warnings of the
offline analyzer (pytest_nginmesh.checks.rules, ``nginmesh check rules``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ManifestError
from .kube import Obj

API_VERSION = "config.istio.io/v1alpha2"
KIND = "RouteRule"
SPEC_FIELDS = {"destination", "precedence", "match", "route", "redirect", "rewrite", "httpReqTimeout",
               "httpReqRetries", "httpFault", "l4Fault", "mirror", "corsPolicy", "appendHeaders", "websocketUpgrade"}
# Not modelled by this mesh; l4Fault is refused by Pilot 0.2.12 itself ("L4 faults are not implemented").
UNSUPPORTED_FIELDS = {"l4Fault", "mirror", "corsPolicy", "appendHeaders"}
ISTIO_SERVICE_FIELDS = {"name", "namespace", "domain", "service", "labels"}
SPECIAL_HEADERS = ("uri", "scheme", "method", "authority")
DURATION = re.compile(r"^(\d+(\.\d+)?(h|m|s|ms|us|ns))+$")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
DEFAULT_TIMEOUT = 15.0
# Pilot 0.2.12 ValidateAbortHTTPStatus: "invalid abort http status" outside 0..600.
ABORT_STATUS_RANGE = (0, 600)


def parse_duration(text: str, where: str = "duration") -> float:
    """Protobuf/Go durations as Istio rules carry them ('7s', '1.5s', '500ms', '1m0s') in seconds."""
    if not isinstance(text, str) or not DURATION.match(text.strip()):
        raise ManifestError(f"{where}: {text!r} is not a duration; write it like 7s, 1.5s or 500ms")
    return sum(float(n) * UNIT_SECONDS[u] for n, u in DURATION_PART.findall(text))


@dataclass(frozen=True)
class HeaderMatch:
    """One condition on a request header (or on uri, scheme, method, authority)."""

    name: str
    kind: str  # exact, prefix or regex
    value: str

    def pattern(self) -> str:
        """A regex that matches the whole header value when the condition holds."""
        if self.kind == "exact":
            return f"^{re.escape(self.value)}$"
        if self.kind == "prefix":
            return f"^{re.escape(self.value)}"
        return f"^(?:{self.value})$"


@dataclass(frozen=True)
class WeightedRoute:
    labels: tuple[tuple[str, str], ...]
    weight: int


@dataclass(frozen=True)
class Fault:
    percent: float
    delay: float | None = None
    status: int | None = None


@dataclass(frozen=True)
class RouteRule:
    """One rule, validated: everything the proxy needs to render it."""

    name: str
    namespace: str
    destination: str
    destination_namespace: str
    precedence: int
    source_name: str | None
    source_labels: tuple[tuple[str, str], ...]
    headers: tuple[HeaderMatch, ...]
    routes: tuple[WeightedRoute, ...]
    redirect_uri: str | None
    redirect_authority: str | None
    rewrite_uri: str | None
    rewrite_authority: str | None
    timeout: float | None
    retry_attempts: int
    retry_per_try_timeout: float | None
    delay: Fault | None
    abort: Fault | None

    @property
    def uri_match(self) -> HeaderMatch | None:
        return next((h for h in self.headers if h.name == "uri"), None)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _only(value: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _percent(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
        raise ManifestError(f"{where}: percent must be a number from 0 to 100, not {value!r}")
    return float(value)


def _labels(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    labels = _mapping(value, where)
    for key, label in labels.items():
        if not isinstance(label, str):
            raise ManifestError(f"{where}: label {key} must be a string (quote it), not {label!r}")
    return tuple(sorted(labels.items()))


def parse_route_rule(obj: Obj) -> RouteRule:
    """Validate a RouteRule object as Pilot 0.2.12 does; raise ManifestError naming the rule, the field and the
    fix."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "?")
    namespace = meta.get("namespace") or "default"
    where = f"routerule/{namespace}/{name}"
    if obj.get("apiVersion") != API_VERSION:
        raise ManifestError(f"{where}: apiVersion must be {API_VERSION}, not {obj.get('apiVersion')!r}")
    spec = _mapping(obj.get("spec"), f"{where}: spec")
    _only(spec, SPEC_FIELDS, f"{where}: spec")
    unsupported = sorted(set(spec) & UNSUPPORTED_FIELDS)
    if unsupported:
        raise ManifestError(f"{where}: spec.{unsupported[0]} is not supported by this mesh")

    service, service_namespace = _service(spec.get("destination"), namespace, f"{where}: spec.destination")

    precedence = spec.get("precedence", 0)
    if not isinstance(precedence, int) or isinstance(precedence, bool):
        raise ManifestError(f"{where}: spec.precedence must be an integer, not {precedence!r}")

    match = _mapping(spec.get("match"), f"{where}: spec.match")
    _only(match, {"source", "request", "tcp", "udp"}, f"{where}: spec.match")
    if "udp" in match:
        raise ManifestError(f"{where}: spec.match.udp: Istio does not support UDP protocol yet; remove it")
    source = _mapping(match.get("source"), f"{where}: spec.match.source")
    _only(source, {"name", "namespace", "domain", "labels"}, f"{where}: spec.match.source")
    request = _mapping(match.get("request"), f"{where}: spec.match.request")
    _only(request, {"headers"}, f"{where}: spec.match.request")
    headers = tuple(_header(key, value, where) for key, value in
                    _mapping(request.get("headers"), f"{where}: spec.match.request.headers").items())

    if "websocketUpgrade" in spec and not isinstance(spec["websocketUpgrade"], bool):
        raise ManifestError(f"{where}: spec.websocketUpgrade must be true or false")
    routes = _routes(spec.get("route"), where)

    redirect = _mapping(spec.get("redirect"), f"{where}: spec.redirect")
    _only(redirect, {"uri", "authority"}, f"{where}: spec.redirect")
    rewrite = _mapping(spec.get("rewrite"), f"{where}: spec.rewrite")
    _only(rewrite, {"uri", "authority"}, f"{where}: spec.rewrite")
    for name_, part in (("redirect", redirect), ("rewrite", rewrite)):
        if name_ in spec and not (part.get("uri") or part.get("authority")):
            raise ManifestError(f"{where}: spec.{name_} must specify uri, authority, or both")
    if redirect and (rewrite or spec.get("route") or spec.get("httpFault")):
        raise ManifestError(f"{where}: spec.redirect cannot be combined with route, rewrite or httpFault; use one")

    timeout = None
    if "httpReqTimeout" in spec:
        simple = _mapping(_mapping(spec["httpReqTimeout"], f"{where}: spec.httpReqTimeout").get("simpleTimeout"),
                          f"{where}: spec.httpReqTimeout.simpleTimeout")
        _only(simple, {"timeout", "overrideHeaderName"}, f"{where}: spec.httpReqTimeout.simpleTimeout")
        timeout = parse_duration(simple.get("timeout", "15s"), f"{where}: spec.httpReqTimeout.simpleTimeout.timeout")

    attempts, per_try = 0, None
    if "httpReqRetries" in spec:
        retry = _mapping(_mapping(spec["httpReqRetries"], f"{where}: spec.httpReqRetries").get("simpleRetry"),
                         f"{where}: spec.httpReqRetries.simpleRetry")
        _only(retry, {"attempts", "perTryTimeout", "overrideHeaderName"}, f"{where}: spec.httpReqRetries.simpleRetry")
        attempts = retry.get("attempts", 0)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise ManifestError(f"{where}: simpleRetry.attempts must be an integer of 0 or more, not {attempts!r}")
        if "perTryTimeout" in retry:
            per_try = parse_duration(retry["perTryTimeout"], f"{where}: simpleRetry.perTryTimeout")

    delay, abort = _faults(spec.get("httpFault"), where)
    return RouteRule(
        name=name, namespace=namespace, destination=service, destination_namespace=service_namespace,
        precedence=precedence, source_name=source.get("name"), source_labels=_labels(source.get("labels"),
                                                                                       f"{where}: match.source.labels"),
        headers=headers, routes=routes,
        redirect_uri=redirect.get("uri"), redirect_authority=redirect.get("authority"),
        rewrite_uri=rewrite.get("uri"), rewrite_authority=rewrite.get("authority"),
        timeout=timeout, retry_attempts=attempts, retry_per_try_timeout=per_try, delay=delay, abort=abort,
    )


def _header(name: Any, condition: Any, where: str) -> HeaderMatch:
    at = f"{where}: spec.match.request.headers.{name}"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+|:?(uri|scheme|method|authority)", name):
        raise ManifestError(f"{at}: header names are letters, digits, '-' and '_'")
    if name != name.lower():  # Pilot 0.2.12 ValidateHTTPHeaderName
        raise ManifestError(f"{at}: header names must be in lower case; write {name.lower()}")
    condition = _mapping(condition, at)
    kinds = [k for k in ("exact", "prefix", "regex") if k in condition]
    _only(condition, {"exact", "prefix", "regex"}, at)
    if len(kinds) != 1 or not isinstance(condition[kinds[0]], str):
        raise ManifestError(f"{at}: give exactly one of exact, prefix or regex, as a string")
    value = condition[kinds[0]]
    if name.lstrip(":") == "uri" and not value:
        raise ManifestError(f"{at}: the uri to match must be non-empty")
    if kinds[0] == "regex":
        try:
            re.compile(value)
        except re.error as e:
            raise ManifestError(f"{at}: regex {value!r} does not compile ({e}); fix the expression") from e
    return HeaderMatch(name.lstrip(":"), kinds[0], value)


def _routes(value: Any, where: str) -> tuple[WeightedRoute, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{where}: spec.route must be a non-empty list of destinations with labels and weight")
    routes = []
    for index, item in enumerate(value):
        item = _mapping(item, f"{where}: spec.route[{index}]")
        _only(item, {"labels", "weight", "destination"}, f"{where}: spec.route[{index}]")
        if "destination" in item:
            _service(item["destination"], "", f"{where}: spec.route[{index}].destination")
        weight = item.get("weight", 0)
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            raise ManifestError(f"{where}: spec.route[{index}].weight must be an integer from 0 to 100")
        routes.append(WeightedRoute(_labels(item.get("labels"), f"{where}: spec.route[{index}].labels"), weight))
    if len(routes) == 1 and routes[0].weight == 0:  # "the weight value is assumed to be 100" (Pilot, cfg.proto)
        routes[0] = WeightedRoute(routes[0].labels, 100)
    total = sum(r.weight for r in routes)
    if total != 100:
        weights = " + ".join(str(r.weight) for r in routes)
        raise ManifestError(f"{where}: route weights must sum to 100, not {weights} = {total}")
    return tuple(routes)


def _faults(value: Any, where: str) -> tuple[Fault | None, Fault | None]:
    fault = _mapping(value, f"{where}: spec.httpFault")
    _only(fault, {"delay", "abort"}, f"{where}: spec.httpFault")
    delay = abort = None
    if "delay" in fault:
        d = _mapping(fault["delay"], f"{where}: spec.httpFault.delay")
        _only(d, {"percent", "fixedDelay", "exponentialDelay", "overrideHeaderName"}, f"{where}: spec.httpFault.delay")
        if "fixedDelay" not in d:
            raise ManifestError(f"{where}: spec.httpFault.delay needs fixedDelay (exponentialDelay is not supported)")
        delay = Fault(_percent(d.get("percent", 100), f"{where}: spec.httpFault.delay"),
                      delay=parse_duration(d["fixedDelay"], f"{where}: spec.httpFault.delay.fixedDelay"))
    if "abort" in fault:
        a = _mapping(fault["abort"], f"{where}: spec.httpFault.abort")
        _only(a, {"percent", "httpStatus", "grpcStatus", "http2Error", "overrideHeaderName"},
              f"{where}: spec.httpFault.abort")
        if "grpcStatus" in a:
            raise ManifestError(f"{where}: spec.httpFault.abort.grpcStatus: Istio does not support gRPC fault "
                                "injection yet; use httpStatus")
        percent = _percent(a.get("percent", 100), f"{where}: spec.httpFault.abort")
        status = a.get("httpStatus")
        low, high = ABORT_STATUS_RANGE
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)
                                   or not low <= status <= high):
            raise ManifestError(f"{where}: spec.httpFault.abort.httpStatus must be a status from {low} to {high}")
        # An abort without an HTTP status (http2Error, or nothing) is accepted and leaves requests alone here.
        abort = Fault(percent, status=status) if status is not None else None
    return delay, abort


def _service(value: Any, default_namespace: str, where: str) -> tuple[str, str]:
    """An IstioService (v1alpha2): its short name and namespace, from name[/namespace] or the FQDN service."""
    service = _mapping(value, where)
    _only(service, ISTIO_SERVICE_FIELDS, where)
    name, fqdn = service.get("name"), service.get("service")
    if isinstance(name, str) and name:
        return name, service.get("namespace") or default_namespace
    if isinstance(fqdn, str) and fqdn:
        parts = fqdn.split(".")
        return parts[0], service.get("namespace") or (parts[1] if len(parts) > 1 else default_namespace)
    raise ManifestError(f"{where}.name is required (the destination service), or service as an FQDN")
