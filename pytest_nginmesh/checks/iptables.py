"""Does a pod's traffic go through the proxy? Judged by evaluating iptables-save rules for probe packets.

The rules are not matched by spelling: each probe (inbound TCP, the application's outbound TCP,
the proxy's own traffic, loopback) is walked through the nat table as the kernel would, and where
it lands is compared with what the mesh needs. A rule the evaluator does not understand, met on
a probe's way, is reported as such instead of being guessed.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ManifestError
from ..injection_policy import PROXY_PORT, PROXY_UID
from ..observe import reports_findings
from .findings import Finding

BUILTIN_CHAINS = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "FORWARD"}
TERMINAL = {"ACCEPT", "DROP", "REJECT", "REDIRECT", "DNAT", "SNAT", "MASQUERADE"}
NON_TERMINATING = {"LOG", "NFLOG", "MARK", "CONNMARK", "TRACE", "CT", "AUDIT"}
IGNORED_MATCHES = {"comment"}
FLAG_OPTIONS = {"--syn", "--socket-exists", "--rsource", "--rcheck", "--update", "--set", "--remove"}
COUNTERS = re.compile(r"^\[\d+:\d+\]\s*")


class IptablesParseError(ManifestError):
    """The text is not iptables-save output."""


@dataclass(frozen=True)
class Condition:
    """One test of a rule: an option, its value, and whether it is negated with '!'."""

    option: str
    value: str
    negated: bool = False
    module: str = ""


@dataclass(frozen=True)
class Rule:
    chain: str
    conditions: tuple[Condition, ...]
    target: str
    target_args: tuple[str, ...]
    goto: bool
    text: str
    line: int


@dataclass
class Chain:
    name: str
    policy: str
    rules: list[Rule] = field(default_factory=list)


Ruleset = dict[str, dict[str, Chain]]


def parse(text: str) -> Ruleset:
    """Parse iptables-save output (any tables, optional counters, either back end) into tables of chains."""
    tables: Ruleset = {}
    table: dict[str, Chain] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            if table is not None:
                raise IptablesParseError(f"line {number}: table {line[1:]} starts before the previous one's COMMIT")
            table = tables.setdefault(line[1:].strip(), {})
        elif line == "COMMIT":
            table = None
        elif table is None:
            raise IptablesParseError(f"line {number}: {line[:60]!r} outside a table: is this iptables-save output?")
        elif line.startswith(":"):
            parts = line[1:].split()
            if len(parts) < 2:
                raise IptablesParseError(f"line {number}: bad chain declaration {line!r}")
            table[parts[0]] = Chain(parts[0], parts[1])
        else:
            rule = _parse_rule(COUNTERS.sub("", line), number)
            if rule.chain not in table:
                table[rule.chain] = Chain(rule.chain, "-")
            table[rule.chain].rules.append(rule)
    if table is not None:
        raise IptablesParseError("the last table has no COMMIT: the dump is cut short")
    if not tables:
        raise IptablesParseError("no table found: give the output of iptables-save")
    return tables


def _parse_rule(line: str, number: int) -> Rule:
    try:
        tokens = shlex.split(line)
    except ValueError as e:
        raise IptablesParseError(f"line {number}: {e} in {line!r}") from e
    if len(tokens) < 2 or tokens[0] not in ("-A", "--append"):
        raise IptablesParseError(f"line {number}: expected '-A CHAIN …', got {line[:60]!r}")
    chain = tokens[1]
    conditions: list[Condition] = []
    target, target_args, goto = "", [], False
    module, negated = "", False
    i = 2
    while i < len(tokens):
        token = tokens[i]
        if token == "!":
            negated = True
            i += 1
            continue
        if token in ("-j", "--jump", "-g", "--goto"):
            goto = token in ("-g", "--goto")
            target = tokens[i + 1] if i + 1 < len(tokens) else ""
            target_args = tokens[i + 2:]
            break
        if token in ("-m", "--match"):
            module = tokens[i + 1] if i + 1 < len(tokens) else ""
            i += 2
            continue
        end = i + 1
        if token not in FLAG_OPTIONS:
            # Most options take one value; a few take two (--tcp-flags MASK COMP, --match-set NAME FLAGS).
            while end < len(tokens) and not tokens[end].startswith("-") and tokens[end] != "!":
                end += 1
            if end == i + 1:
                raise IptablesParseError(f"line {number}: option {token} has no value in {line!r}")
        value = " ".join(tokens[i + 1:end])
        i = end
        conditions.append(Condition(token, value, negated, module))
        negated = False
    return Rule(chain, tuple(conditions), target, tuple(target_args), goto, line, number)


# -- evaluation ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Packet:
    """A probe packet, as the nat table sees it when a connection starts."""

    hook: str  # PREROUTING (arriving) or OUTPUT (sent by a local process)
    src: str
    dst: str
    dport: int
    sport: int = 43210
    protocol: str = "tcp"
    in_iface: str = ""
    out_iface: str = ""
    uid: int | None = None
    gid: int | None = None
    local_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Landing:
    """Where a probe ends: redirected to a port, DNATed, let through, dropped, or unknown."""

    verdict: str  # "redirect", "dnat", "accept", "drop", "unknown"
    port: int | None = None
    destination: str = ""
    path: tuple[str, ...] = ()
    reason: str = ""

    def describe(self) -> str:
        if self.verdict == "redirect":
            return f"redirected to port {self.port}"
        if self.verdict == "dnat":
            return f"DNAT to {self.destination}"
        if self.verdict == "unknown":
            return f"unknown ({self.reason})"
        return "not redirected" if self.verdict == "accept" else self.verdict


class Unevaluable(Exception):
    def __init__(self, rule: Rule, why: str) -> None:
        super().__init__(why)
        self.rule = rule
        self.why = why


def _in_net(address: str, spec: str) -> bool:
    return ipaddress.IPv4Address(address) in ipaddress.IPv4Network(spec, strict=False)


def _iface(name: str, pattern: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def _in_range(value: int | None, spec: str) -> bool:
    if value is None:
        return False
    low, _, high = spec.partition(":" if ":" in spec else "-")
    return int(low or 0) <= value <= int(high or low or 65535)


def _matches(condition: Condition, packet: Packet, rule: Rule) -> bool:
    option, value, module = condition.option, condition.value, condition.module
    if module in IGNORED_MATCHES:
        return not condition.negated
    if option in ("-p", "--protocol"):
        result = value in ("all", "0") or value == packet.protocol
    elif option in ("-s", "--source", "--src"):
        result = any(_in_net(packet.src, v) for v in value.split(","))
    elif option in ("-d", "--destination", "--dst"):
        result = any(_in_net(packet.dst, v) for v in value.split(","))
    elif option in ("-i", "--in-interface"):
        result = _iface(packet.in_iface, value) if packet.in_iface else False
    elif option in ("-o", "--out-interface"):
        result = _iface(packet.out_iface, value) if packet.out_iface else False
    elif module in ("tcp", "udp", "") and option in ("--dport", "--destination-port"):
        result = _in_range(packet.dport, value)
    elif module in ("tcp", "udp", "") and option in ("--sport", "--source-port"):
        result = _in_range(packet.sport, value)
    elif module == "multiport" and option in ("--dports", "--destination-ports"):
        result = any(_in_range(packet.dport, v) for v in value.split(","))
    elif module == "multiport" and option == "--ports":
        result = any(_in_range(packet.dport, v) or _in_range(packet.sport, v) for v in value.split(","))
    elif module == "multiport" and option in ("--sports", "--source-ports"):
        result = any(_in_range(packet.sport, v) for v in value.split(","))
    elif module == "owner" and option == "--uid-owner":
        if packet.hook != "OUTPUT":
            return False  # owner only matches locally generated packets
        if not value.replace("-", "").isdigit():
            raise Unevaluable(rule, f"owner match on user name {value!r}: give numeric uids")
        result = packet.uid is not None and _in_range(packet.uid, value)
    elif module == "owner" and option == "--gid-owner":
        if packet.hook != "OUTPUT":
            return False
        if packet.gid is None:
            raise Unevaluable(rule, "gid-owner match, and the probe has no gid")
        result = _in_range(packet.gid, value)
    elif module == "addrtype" and option == "--dst-type":
        local = packet.dst in packet.local_addresses or _in_net(packet.dst, "127.0.0.0/8")
        if value not in ("LOCAL", "UNICAST"):
            raise Unevaluable(rule, f"addrtype {value}")
        result = local if value == "LOCAL" else True
    else:
        where = f"-m {module} " if module else ""
        raise Unevaluable(rule, f"cannot evaluate {where}{option} {value}".strip())
    return result != condition.negated


def _target_port(rule: Rule) -> int | None:
    args = list(rule.target_args)
    for flag in ("--to-ports", "--to-port"):
        if flag in args and args.index(flag) + 1 < len(args):
            return int(args[args.index(flag) + 1].split("-")[0])
    return None


def evaluate(table: dict[str, Chain], packet: Packet) -> Landing:
    """Walk a packet through the nat table from its hook; say where it lands and by which rules."""
    path: list[str] = []
    try:
        landing = _walk(table, packet.hook, packet, path, depth=0)
    except Unevaluable as e:
        return Landing("unknown", path=(*path, e.rule.text), reason=e.why)
    return landing or Landing("accept", path=tuple(path))


def _walk(table: dict[str, Chain], name: str, packet: Packet, path: list[str], depth: int) -> Landing | None:
    chain = table.get(name)
    if chain is None:
        if name in BUILTIN_CHAINS:
            return None
        raise Unevaluable(Rule(name, (), name, (), False, f"(chain {name})", 0), f"jump to undefined chain {name}")
    if depth > 32:
        raise Unevaluable(chain.rules[0] if chain.rules else Rule(name, (), "", (), False, name, 0),
                          "chains nest deeper than 32: a loop?")
    for rule in chain.rules:
        if not all(_matches(c, packet, rule) for c in rule.conditions):
            continue
        path.append(rule.text)
        target = rule.target
        if target == "":
            continue
        if target == "RETURN":
            return None
        if target in NON_TERMINATING:
            continue
        if target == "REDIRECT":
            port = _target_port(rule)
            return Landing("redirect", port=port if port is not None else packet.dport, path=tuple(path))
        if target == "DNAT":
            args = list(rule.target_args)
            destination = args[args.index("--to-destination") + 1] if "--to-destination" in args else "?"
            return Landing("dnat", destination=destination, path=tuple(path))
        if target in ("ACCEPT", "SNAT", "MASQUERADE"):
            return Landing("accept", path=tuple(path))
        if target in ("DROP", "REJECT"):
            return Landing("drop", path=tuple(path))
        if target in table:
            result = _walk(table, target, packet, path, depth + 1)
            if result is not None or rule.goto:
                return result
            continue
        raise Unevaluable(rule, f"unknown target {target}")
    if name in BUILTIN_CHAINS and chain.policy in ("DROP", "REJECT"):
        return Landing("drop", path=tuple(path))
    return None


# -- the check -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaptureExpectations:
    """How the mesh set the pod up: proxy port and uid, and the outbound ranges when -i was used."""

    proxy_port: int = PROXY_PORT
    proxy_uid: int = PROXY_UID
    include_ranges: tuple[str, ...] = ()
    pod_ip: str = "10.251.0.10"


@dataclass(frozen=True)
class Probe:
    name: str
    description: str
    packet: Packet
    must_reach_proxy: bool


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    landing: Landing

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe.name, "description": self.probe.description,
                "landing": self.landing.describe(), "rules": list(self.landing.path)}


INBOUND_PORTS = (80, 443, 9080, 15000, 31400)
OUTBOUND_SAMPLES = ("10.96.0.10", "192.168.10.20", "203.0.113.50")
APP_UIDS = (0, 1000)


def probes(expect: CaptureExpectations) -> Iterator[Probe]:
    pod = expect.pod_ip
    local = (pod, "127.0.0.1")
    for port in INBOUND_PORTS:
        yield Probe(f"inbound:{port}", f"inbound TCP to the pod on port {port}",
                    Packet("PREROUTING", "198.51.100.7", pod, port, in_iface="eth0", local_addresses=local), True)
    targets = [str(next(ipaddress.IPv4Network(r, strict=False).hosts())) for r in expect.include_ranges]
    for uid in APP_UIDS:
        for dst in targets or OUTBOUND_SAMPLES:
            yield Probe(f"outbound:uid{uid}:{dst}", f"outbound TCP from uid {uid} to {dst}:9080",
                        Packet("OUTPUT", pod, dst, 9080, out_iface="eth0", uid=uid, gid=uid, local_addresses=local),
                        True)
        yield Probe(f"self:uid{uid}", f"TCP from uid {uid} to the pod's own address",
                    Packet("OUTPUT", pod, pod, 9080, out_iface="lo", uid=uid, gid=uid, local_addresses=local), True)
    if targets:
        outside = next((a for a in (*OUTBOUND_SAMPLES, "198.18.0.1")
                        if not any(_in_net(a, r) for r in expect.include_ranges)), None)
        if outside is not None:
            yield Probe("outbound:outside-ranges", f"outbound TCP to {outside}, outside the include ranges",
                        Packet("OUTPUT", pod, outside, 9080, out_iface="eth0", uid=0, gid=0, local_addresses=local),
                        False)
    for dst in (targets or OUTBOUND_SAMPLES)[:1]:
        yield Probe("proxy-outbound", f"outbound TCP from the proxy (uid {expect.proxy_uid}) to {dst}:9080",
                    Packet("OUTPUT", pod, dst, 9080, out_iface="eth0", uid=expect.proxy_uid, gid=expect.proxy_uid,
                           local_addresses=local), False)
    yield Probe("proxy-to-app", f"the proxy (uid {expect.proxy_uid}) forwarding to 127.0.0.1:9080",
                Packet("OUTPUT", "127.0.0.1", "127.0.0.1", 9080, out_iface="lo", uid=expect.proxy_uid,
                       gid=expect.proxy_uid, local_addresses=local), False)
    yield Probe("loopback", "TCP from uid 0 to 127.0.0.1:9080",
                Packet("OUTPUT", "127.0.0.1", "127.0.0.1", 9080, out_iface="lo", uid=0, gid=0,
                       local_addresses=local), False)


FINDING_FOR = {
    "inbound": ("inbound-not-captured", "inbound-wrong-port"),
    "outbound": ("outbound-not-captured", "outbound-wrong-port"),
    "self": ("outbound-not-captured", "outbound-wrong-port"),
}
CAPTURED_FINDING = {
    "outbound": "outside-include-ranges-captured",
    "proxy-outbound": "proxy-traffic-captured",
    "proxy-to-app": "proxy-traffic-captured",
    "loopback": "loopback-captured",
}


@reports_findings
def check_rules(text: str, expect: CaptureExpectations | None = None,
                subject: str = "iptables") -> tuple[list[Finding], list[ProbeResult]]:
    """Findings (empty when traffic capture is right) and where every probe landed."""
    expect = expect or CaptureExpectations()
    table = parse(text).get("nat")
    if table is None:
        return [Finding("iptables.no-nat-table", subject, "no nat table: nothing redirects traffic to the proxy")], []
    results = [ProbeResult(p, evaluate(table, p.packet)) for p in probes(expect)]
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()

    def add(id_: str, message: str, result: ProbeResult) -> None:
        key = (id_, result.landing.path[-1] if result.landing.path else "")
        if key in seen:
            return
        seen.add(key)
        findings.append(Finding(f"iptables.{id_}", subject, message, result.to_dict()))

    for result in results:
        landing, probe = result.landing, result.probe
        family = probe.name.split(":")[0]
        if landing.verdict == "unknown":
            add("unevaluable-rule", f"{probe.description}: {landing.reason}", result)
        elif probe.must_reach_proxy and not (landing.verdict == "redirect" and landing.port == expect.proxy_port):
            missing, wrong = FINDING_FOR[family]
            if landing.verdict == "redirect":
                add(wrong, f"{probe.description} is redirected to port {landing.port}, not {expect.proxy_port}",
                    result)
            else:
                add(missing, f"{probe.description} is {landing.describe()}: it bypasses the proxy", result)
        elif not probe.must_reach_proxy and landing.verdict == "redirect":
            add(CAPTURED_FINDING[family], f"{probe.description} is redirected to port {landing.port}"
                + (": the proxy would loop onto itself" if family.startswith("proxy") else ""), result)
    return findings, results
