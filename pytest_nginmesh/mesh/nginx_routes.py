"""Render route rules into NGINX: rule selection by headers, weighted splits, faults, retries, timeouts."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ManifestError
from ..profiles import ISTIO_RENDERING, SIDECAR_REDIRECT, RouteRendering
from ..routerules import DEFAULT_TIMEOUT, HeaderMatch, RouteRule, parse_route_rule

DELAY_PORT = 15009
UNAVAILABLE_PORT = 15008
UNAVAILABLE = "nginmesh_unavailable"
CONNECT_TIMEOUT = "10s"
RETRY_ON = "error timeout http_500 http_502 http_503 http_504"
# What the Nginmesh agent retries on (nginmesh/nginmesh istio/agent/nginx/converter.go, createProxyNextUpstream).
NGINMESH_RETRY_ON = "error http_500 http_502 http_503 http_504"


@dataclass(frozen=True)
class Identity:
    """The proxy as rules and reports see it: source name, pod labels, its service, where reports go."""

    service_cluster: str
    labels: tuple[tuple[str, str], ...]
    service_fqdn: str = "unknown"
    report_to: str | None = None  # ip:port of the mixer's report endpoint (syslog over UDP)

    @property
    def version(self) -> str:
        return dict(self.labels).get("version", "unknown")


def report_format(name: str, destination_service: str, destination_version: str,
                  source: tuple[str, str] = ("$nginmesh_source_service", "$nginmesh_source_version")) -> str:
    """A JSON log format carrying Mixer's request attributes; the source comes from the caller's headers
    unless given (the caller's own proxy, reporting for itself, knows it)."""
    fields = {
        "source_service": source[0], "source_version": source[1],
        "destination_service": destination_service, "destination_version": destination_version,
        "response_code": "$status", "response_duration": "$request_time", "request_size": "$request_length",
        "response_size": "$bytes_sent", "request_id": "$nginmesh_request_id",
    }
    body = ",".join(f'"{k}":"{v}"' for k, v in fields.items())
    return f"  log_format {name} escape=json '{{{body}}}';"


def report_log(identity: Identity, format_name: str, condition: str = "") -> list[str]:
    if identity.report_to is None:
        return []
    suffix = f" if={condition}" if condition else ""
    return [f"access_log syslog:server={identity.report_to},tag=nginmesh,nohostname {format_name}{suffix};"]


def proxy_headers(identity: Identity, host: str = "$http_host") -> list[str]:
    """What every proxied request carries: the Host, the request id, and who sends it (for reports)."""
    return ['proxy_set_header Connection "";', f"proxy_set_header Host {host};",
            "proxy_set_header x-request-id $nginmesh_request_id;",
            f"proxy_set_header x-nginmesh-source-service {quote(identity.service_fqdn)};",
            f"proxy_set_header x-nginmesh-source-version {quote(identity.version)};"]


@dataclass(frozen=True)
class Target:
    """One service port as the proxy routes to it; ``key`` names its upstream and internal location."""

    key: str
    namespace: str
    service: str
    port: int
    instances: tuple[tuple[str, int, tuple[tuple[str, str], ...]], ...]  # ip, port, labels


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_time(seconds: float) -> str:
    """An NGINX time: whole seconds, or whole milliseconds, since NGINX refuses fractions ('1.5s')."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def percent(value: float) -> str:
    """A split_clients share: at most two decimals, as NGINX accepts."""
    return f"{round(value, 2):g}%"


def service_fqdn(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.cluster.local"


def header_variable(name: str) -> str:
    special = {"uri": "$request_uri", "scheme": "$scheme", "method": "$request_method", "authority": "$http_host"}
    return special.get(name, "$http_" + name.lower().replace("-", "_"))


def header_regex(match: HeaderMatch) -> str:
    if match.name != "uri":
        return match.pattern()
    query = r"(\?.*)?$"  # $request_uri carries the query string; uri conditions look at the path
    if match.kind == "prefix":
        return match.pattern()
    return match.pattern()[:-1] + query


def applicable_rules(rules: list[RouteRule], target: Target, identity: Identity) -> list[RouteRule]:
    """The rules for this destination that this proxy applies, strongest first."""
    own = dict(identity.labels)
    chosen = [r for r in rules
              if r.destination == target.service and r.destination_namespace == target.namespace
              and (r.source_name is None or r.source_name == identity.service_cluster)
              and all(own.get(k) == v for k, v in r.source_labels)]
    return sorted(chosen, key=lambda r: (-r.precedence, r.name))


def parse_rules(objects: list[dict[str, object]]) -> list[RouteRule]:
    rules = []
    for obj in objects:
        try:
            rules.append(parse_route_rule(obj))
        except ManifestError:
            continue  # refused at apply, so it cannot be here; skipping keeps a proxy serving if it is
    return rules


class RouteRenderer:
    """Collects the http-level blocks (maps, split_clients, upstreams) and the server-level locations; what a
    rule becomes follows ``rendering``, the release's (Istio's semantics in full for the local mesh)."""

    def __init__(self, identity: Identity, rendering: RouteRendering = ISTIO_RENDERING,
                 redirect_status: int = SIDECAR_REDIRECT) -> None:
        self.identity = identity
        self.rendering = rendering
        self.redirect_status = redirect_status
        self.http: list[str] = []
        self.locations: list[str] = []

    def upstream(self, name: str, servers: list[tuple[str, int]], copies: int = 1) -> None:
        lines = [f"    server {ip}:{port} max_fails=0;" for ip, port in servers for _ in range(copies)]
        self.http += [f"  upstream {name} {{", *lines, "  }"]

    def service(self, target: Target, rules: list[RouteRule]) -> None:
        """The internal location for one service port: straight to its upstream, or through its rules."""
        base = f"/.nginmesh/{target.key}"
        if not rules:
            self.locations += [f"    location = {base} {{", "      internal;",
                               f"      proxy_pass http://{target.key}$request_uri;", "    }"]
            return
        selector = f"$nginmesh_rule_{target.key}"
        self._selection(target, rules, selector)
        self.locations += [f"    location = {base} {{", "      internal;",
                           f"      rewrite ^ {base}/{selector} last;", "    }",
                           f"    location = {base}/default {{", "      internal;",
                           f"      proxy_pass http://{target.key}$request_uri;", "    }"]
        for index, rule in enumerate(rules):
            self._rule(target, rule, f"r{index}", base)

    def _selection(self, target: Target, rules: list[RouteRule], selector: str) -> None:
        flags = []
        for index, rule in enumerate(rules):
            if not rule.headers:
                flags.append("1")
                continue
            parts = []
            for number, header in enumerate(rule.headers):
                variable = f"$nginmesh_m_{target.key}_r{index}_{number}"
                self.http += [f"  map {header_variable(header.name)} {variable} {{",
                              f"    {quote('~' + header_regex(header))} 1;", '    default "";', "  }"]
                parts.append(variable)
            combined = f"$nginmesh_m_{target.key}_r{index}"
            self.http += [f"  map {quote(''.join(parts))} {combined} {{", f'    "{"1" * len(parts)}" 1;',
                          '    default "";', "  }"]
            flags.append(combined)
        self.http.append(f"  map {quote(':'.join(flags))} {selector} {{")
        for index in range(len(rules)):
            self.http.append(f"    {quote('~^' + '[^:]*:' * index + '1')} r{index};")
        self.http += ["    default default;", "  }"]

    def _rule(self, target: Target, rule: RouteRule, rule_id: str, base: str) -> None:
        name = f"{target.key}_{rule_id}"
        body = ["      internal;"]
        if rule.abort is not None and rule.abort.percent > 0:
            self.http += [f'  split_clients "${{request_id}}abort" $nginmesh_abort_{name} {{',
                          f"    {percent(rule.abort.percent)} 1;", '    * "";', "  }",
                          report_format(f"nginmesh_abort_{name}", service_fqdn(target.service, target.namespace),
                                        "unknown", (self.identity.service_fqdn, self.identity.version))]
            # An aborted request never reaches the destination's proxy, so this proxy, the source's, reports it.
            body += ["      access_log /dev/stdout nginmesh;",
                     *("      " + line for line in report_log(self.identity, f"nginmesh_abort_{name}",
                                                             f"$nginmesh_abort_{name}")),
                     f"      if ($nginmesh_abort_{name}) {{ return {rule.abort.status}; }}"]
        if rule.redirect_uri is not None or rule.redirect_authority is not None:
            authority = rule.redirect_authority or "$http_host"
            location = quote("http://" + authority + (rule.redirect_uri or "$request_uri"))
            body.append(f"      return {self.redirect_status} {location};")
            self.locations += [f"    location = {base}/{rule_id} {{", *body, "    }"]
            return
        if (self.rendering.fault_delay and rule.delay is not None and rule.delay.delay is not None
                and rule.delay.percent > 0):
            self.http += [f'  split_clients "${{request_id}}delay" $nginmesh_delay_{name} {{',
                          f"    {percent(rule.delay.percent)} {round(rule.delay.delay * 1000)};", "    * 0;", "  }"]
            body.append(f"      auth_request /.nginmesh/delay/{name};")
            self.locations += [f"    location = /.nginmesh/delay/{name} {{", "      internal;",
                               "      proxy_pass_request_body off;", '      proxy_set_header Content-Length "";',
                               "      proxy_read_timeout 3600s;",
                               f"      proxy_pass http://127.0.0.1:{DELAY_PORT}/delay/$nginmesh_delay_{name};",
                               "    }"]
        copies = self._retries(rule, body)
        if rule.rewrite_authority:
            body += ["      " + line for line in proxy_headers(self.identity, quote(rule.rewrite_authority))]
        uri = "$request_uri"
        if rule.rewrite_uri is not None:
            uri = f"$nginmesh_uri_{name}"
            match = rule.uri_match
            prefix = match.value if match is not None and match.kind in ("prefix", "exact") else "/"
            body += [f"      set {uri} $request_uri;",
                     f"      if ($request_uri ~ {quote('^' + _pcre_literal(prefix) + '(.*)$')}) "
                     f"{{ set {uri} {quote(rule.rewrite_uri + '$1')}; }}"]
        body.append(f"      proxy_pass http://{self._split(target, rule, name, copies)}{uri};")
        self.locations += [f"    location = {base}/{rule_id} {{", *body, "    }"]

    def _retries(self, rule: RouteRule, body: list[str]) -> int:
        """The rule's timeouts and retries in ``body``; returns how often each endpoint is listed upstream."""
        if self.rendering.retries == "next-upstream":
            # nginmesh template.go: the three directives, the per-try timeout in ms (0: unbounded), no read timeout.
            if rule.retry_attempts:
                per_try_ms = round((rule.retry_per_try_timeout or 0) * 1000)
                body += [f"      proxy_next_upstream {NGINMESH_RETRY_ON};",
                         f"      proxy_next_upstream_timeout {per_try_ms}ms;",
                         f"      proxy_next_upstream_tries {rule.retry_attempts};"]
            return 1
        timeout = rule.timeout if self.rendering.request_timeout else None
        per_try = rule.retry_per_try_timeout or timeout or DEFAULT_TIMEOUT
        body.append(f"      proxy_read_timeout {nginx_time(per_try)};")
        body.append(f"      proxy_send_timeout {nginx_time(per_try)};")
        if not rule.retry_attempts:
            return 1
        copies = rule.retry_attempts + 1
        body += [f"      proxy_next_upstream {RETRY_ON};", f"      proxy_next_upstream_tries {copies};"]
        if timeout is not None:
            body.append(f"      proxy_next_upstream_timeout {nginx_time(timeout)};")
        return copies

    def _split(self, target: Target, rule: RouteRule, name: str, copies: int) -> str:
        """The upstream (or split_clients variable naming one) for the rule's weighted routes."""
        routes = [(dict(r.labels), r.weight) for r in rule.routes] or [({}, 100)]
        groups = []
        for index, (labels, weight) in enumerate(routes):
            servers = [(ip, port) for ip, port, have in target.instances
                       if all(dict(have).get(k) == v for k, v in labels.items())]
            group = f"{name}_{index}"
            if servers:
                self.upstream(group, servers, copies)
            groups.append((group if servers else UNAVAILABLE, weight))
        live = [(group, weight) for group, weight in groups if weight > 0]
        if len(live) == 1:
            return live[0][0]
        variable = f"$nginmesh_route_{name}"
        self.http.append(f'  split_clients "${{request_id}}route" {variable} {{')
        self.http += [f"    {weight}% {group};" for group, weight in live[:-1]]
        self.http += [f"    * {live[-1][0]};", "  }"]
        return variable


def _pcre_literal(text: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\/" else c for c in text)

