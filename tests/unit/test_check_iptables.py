"""The iptables-save check (pytest_nginmesh.checks.iptables): parsing, evaluating probes, and the findings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_nginmesh.checks.findings import explain, ids
from pytest_nginmesh.checks.iptables import (
    CaptureExpectations,
    Chain,
    Condition,
    IptablesParseError,
    Packet,
    ProbeResult,
    Ruleset,
    check_rules,
    evaluate,
    parse,
)

DUMPS_DIR = Path(__file__).resolve().parents[1] / "data" / "iptables"
RECORDED = sorted(DUMPS_DIR.glob("prepare-proxy-*.txt"))
FULL_TABLES = DUMPS_DIR / "full-tables.nft.txt"
INCLUDE_RANGES = ("10.0.0.0/8", "172.16.0.0/12")
NAT_CHAINS = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "ISTIO_OUTPUT", "ISTIO_REDIRECT"]


def by_name(path: Path) -> str:
    return path.name


def read(name: str) -> str:
    return (DUMPS_DIR / name).read_text(encoding="utf-8")


PLAIN = read("prepare-proxy-plain.nft.txt")
INCLUDE = read("prepare-proxy-include.nft.txt")


def expectations_for(path: Path) -> CaptureExpectations:
    """The include dumps were made with ``-i 10.0.0.0/8,172.16.0.0/12``; the plain ones without."""
    return CaptureExpectations(include_ranges=INCLUDE_RANGES if "include" in path.name else ())


def rule_texts(chain: Chain) -> list[str]:
    return [rule.text for rule in chain.rules]


def without_lines(text: str, *fragments: str) -> str:
    """The text without the lines holding each fragment; each fragment must be on exactly one line."""
    lines = text.splitlines(keepends=True)
    for fragment in fragments:
        hits = [line for line in lines if fragment in line]
        assert len(hits) == 1, f"{fragment!r} is on {len(hits)} lines"
        lines.remove(hits[0])
    return "".join(lines)


def replaced(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} is not in the dump"
    return text.replace(old, new)


def inserted_before(text: str, first_of: str, line: str) -> str:
    """The text with ``line`` put before the first line starting with ``first_of``."""
    lines = text.splitlines(keepends=True)
    index = next(i for i, current in enumerate(lines) if current.startswith(first_of))
    return "".join([*lines[:index], line + "\n", *lines[index:]])


def landings(results: list[ProbeResult]) -> dict[str, str]:
    return {result.probe.name: result.landing.describe() for result in results}


def finding_ids(text: str, expect: CaptureExpectations | None = None) -> set[str]:
    findings, _ = check_rules(text, expect)
    return ids(findings)


# -- parse -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", RECORDED, ids=by_name)
def test_parse_recorded_dump_gives_the_nat_chains_and_policies(path: Path) -> None:
    tables = parse(path.read_text(encoding="utf-8"))
    assert list(tables) == ["nat"]
    nat = tables["nat"]
    assert list(nat) == NAT_CHAINS
    assert {name: chain.policy for name, chain in nat.items()} == {
        "PREROUTING": "ACCEPT", "INPUT": "ACCEPT", "OUTPUT": "ACCEPT", "POSTROUTING": "ACCEPT",
        "ISTIO_OUTPUT": "-", "ISTIO_REDIRECT": "-",
    }
    outbound_rules = 6 if "include" in path.name else 4
    assert {name: len(chain.rules) for name, chain in nat.items()} == {
        "PREROUTING": 1, "INPUT": 0, "OUTPUT": 1, "POSTROUTING": 0, "ISTIO_OUTPUT": outbound_rules, "ISTIO_REDIRECT": 1,
    }


@pytest.mark.parametrize("path", RECORDED, ids=by_name)
def test_parse_keeps_each_rule_with_its_chain_and_line(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for chain in parse(text)["nat"].values():
        for rule in chain.rules:
            assert rule.chain == chain.name
            assert rule.text.startswith(f"-A {chain.name} ")
            assert lines[rule.line - 1].endswith(rule.text)


@pytest.mark.parametrize(("with_counters", "without"), [
    ("prepare-proxy-plain.nft-counters.txt", "prepare-proxy-plain.nft.txt"),
    ("prepare-proxy-include.nft-counters.txt", "prepare-proxy-include.nft.txt"),
])
def test_parse_strips_counters(with_counters: str, without: str) -> None:
    counted, plain = parse(read(with_counters))["nat"], parse(read(without))["nat"]
    assert "[0:0] -A" in read(with_counters)
    for name in NAT_CHAINS:
        assert rule_texts(counted[name]) == rule_texts(plain[name])
        assert not any(text.startswith("[") for text in rule_texts(counted[name]))


def test_parse_gives_the_same_rules_for_legacy_and_nft_back_ends() -> None:
    legacy = parse(read("prepare-proxy-plain.legacy-counters.txt"))["nat"]
    nft = parse(read("prepare-proxy-plain.nft-counters.txt"))["nat"]
    assert list(legacy) == list(nft)
    for name in NAT_CHAINS:
        assert rule_texts(legacy[name]) == rule_texts(nft[name])
        assert legacy[name].policy == nft[name].policy


def test_parse_splits_a_rule_into_conditions_target_and_arguments() -> None:
    nat = parse(PLAIN)["nat"]
    loopback = nat["ISTIO_OUTPUT"].rules[0]
    assert loopback.conditions == (
        Condition("-d", "127.0.0.1/32", negated=True),
        Condition("-o", "lo"),
        Condition("--comment", "istio/redirect-implicit-loopback", module="comment"),
    )
    assert (loopback.target, loopback.target_args, loopback.goto) == ("ISTIO_REDIRECT", (), False)
    redirect = nat["ISTIO_REDIRECT"].rules[0]
    assert (redirect.target, redirect.target_args) == ("REDIRECT", ("--to-ports", "15001"))
    owner = nat["ISTIO_OUTPUT"].rules[1]
    assert Condition("--uid-owner", "1337", module="owner") in owner.conditions


def test_parse_keeps_comments_with_spaces_in_the_rule_text() -> None:
    text = "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -m comment --comment \"allow ssh in\" -j RETURN\nCOMMIT\n"
    (rule,) = parse(text)["nat"]["OUTPUT"].rules
    assert rule.text == '-A OUTPUT -m comment --comment "allow ssh in" -j RETURN'
    assert Condition("--comment", "allow ssh in", module="comment") in rule.conditions
    assert rule.target == "RETURN"


def test_parse_full_dump_reads_every_table() -> None:
    tables = parse(FULL_TABLES.read_text(encoding="utf-8"))
    assert list(tables) == ["filter", "mangle", "nat"]
    assert rule_texts(tables["filter"]["INPUT"])[1] == "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"
    assert '"bookinfo app port"' in rule_texts(tables["filter"]["INPUT"])[2]
    assert list(tables["mangle"]) == ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
    assert all(chain.rules == [] and chain.policy == "ACCEPT" for chain in tables["mangle"].values())
    assert rule_texts(tables["nat"]["ISTIO_OUTPUT"]) == rule_texts(parse(PLAIN)["nat"]["ISTIO_OUTPUT"])


@pytest.mark.parametrize(("text", "words"), [
    ("hello world\n", "outside a table"),
    ("", "no table"),
    ("# Generated by iptables-save v1.8.9\n", "no table"),
    (PLAIN.replace("COMMIT\n", ""), "no COMMIT"),
    (PLAIN.replace('"istio/bypass-envoy"', '"istio/bypass-envoy'), "line 12"),
    ("*nat\n:OUTPUT\nCOMMIT\n", "chain declaration"),
    ("*nat\n:OUTPUT ACCEPT [0:0]\n-I OUTPUT -j RETURN\nCOMMIT\n", "-A CHAIN"),
    ("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -d\nCOMMIT\n", "no value"),
], ids=["not-a-dump", "empty", "comments-only", "no-commit", "unclosed-quote", "bad-chain", "not-append",
        "option-without-value"])
def test_parse_rejects_what_is_not_a_dump(text: str, words: str) -> None:
    with pytest.raises(IptablesParseError, match=re.escape(words)):
        parse(text)


def test_parse_rejects_a_table_without_commit_followed_by_another() -> None:
    text = "*filter\n:INPUT ACCEPT [0:0]\n" + PLAIN
    with pytest.raises(IptablesParseError):
        parse(text)


def test_parse_accepts_tcp_flags_as_iptables_save_writes_them() -> None:
    filter_table = ("*filter\n:INPUT ACCEPT [0:0]\n"
                    "-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT\nCOMMIT\n")
    tables = parse(filter_table + PLAIN)
    (rule,) = tables["filter"]["INPUT"].rules
    assert rule.target == "ACCEPT"


# -- check_rules on the recorded dumps -------------------------------------------------------------

@pytest.mark.parametrize("path", [*RECORDED, FULL_TABLES], ids=by_name)
def test_recorded_dump_is_conformant(path: Path) -> None:
    findings, results = check_rules(path.read_text(encoding="utf-8"), expectations_for(path))
    assert findings == [], explain(findings)
    where = landings(results)
    inbound = [name for name in where if name.startswith("inbound:")]
    assert inbound == ["inbound:80", "inbound:443", "inbound:9080", "inbound:15000", "inbound:31400"]
    for name in inbound:
        assert where[name] == "redirected to port 15001", name
    for name in ("self:uid0", "self:uid1000"):
        assert where[name] == "redirected to port 15001", name
    for name in ("proxy-outbound", "proxy-to-app", "loopback"):
        assert where[name] == "not redirected", name


@pytest.mark.parametrize("path", [p for p in RECORDED if "include" in p.name], ids=by_name)
def test_include_dump_captures_the_ranges_only(path: Path) -> None:
    _, results = check_rules(path.read_text(encoding="utf-8"), expectations_for(path))
    where = landings(results)
    for uid in (0, 1000):
        for address in ("10.0.0.1", "172.16.0.1"):
            assert where[f"outbound:uid{uid}:{address}"] == "redirected to port 15001"
    assert where["outbound:outside-ranges"] == "not redirected"


def test_plain_dump_captures_every_outbound_sample() -> None:
    _, results = check_rules(PLAIN)
    outbound = {name: landing for name, landing in landings(results).items() if name.startswith("outbound:")}
    assert len(outbound) == 6
    assert set(outbound.values()) == {"redirected to port 15001"}


def test_probe_path_lists_the_rules_met() -> None:
    _, results = check_rules(PLAIN)
    (inbound,) = [r for r in results if r.probe.name == "inbound:9080"]
    assert inbound.landing.path == (rule_texts(parse(PLAIN)["nat"]["PREROUTING"])[0],
                                    rule_texts(parse(PLAIN)["nat"]["ISTIO_REDIRECT"])[0])
    assert inbound.to_dict()["landing"] == "redirected to port 15001"


def test_include_dump_checked_without_its_ranges_misses_outbound_traffic() -> None:
    assert finding_ids(INCLUDE) == {"iptables.outbound-not-captured"}


# -- hand-broken dumps -----------------------------------------------------------------------------

LOOPBACK_RULES = ("-o lo", "-d 127.0.0.1/32 -m comment --comment \"istio/bypass-explicit-loopback\"")
WITH_RANGES = CaptureExpectations(include_ranges=INCLUDE_RANGES)
BROKEN = [
    pytest.param(without_lines(PLAIN, "-A PREROUTING"), None, {"iptables.inbound-not-captured"},
                 id="no-prerouting-jump"),
    pytest.param(without_lines(PLAIN, "--uid-owner 1337"), None, {"iptables.proxy-traffic-captured"},
                 id="no-uid-return"),
    pytest.param(replaced(PLAIN, "--to-ports 15001", "--to-ports 15002"), None,
                 {"iptables.inbound-wrong-port", "iptables.outbound-wrong-port"}, id="redirect-to-15002"),
    pytest.param(without_lines(PLAIN, "-A OUTPUT -p tcp"), None, {"iptables.outbound-not-captured"},
                 id="no-output-jump"),
    pytest.param(without_lines(PLAIN, *LOOPBACK_RULES), None, {"iptables.loopback-captured"},
                 id="no-loopback-rules"),
    pytest.param(without_lines(INCLUDE, "--uid-owner 1337"), WITH_RANGES, {"iptables.proxy-traffic-captured"},
                 id="include-no-uid-return"),
    pytest.param(inserted_before(PLAIN, "-A ISTIO_OUTPUT", "-A ISTIO_OUTPUT -m mark --mark 0x1 -j RETURN"), None,
                 {"iptables.unevaluable-rule"}, id="unknown-match"),
    pytest.param(PLAIN, WITH_RANGES, {"iptables.outside-include-ranges-captured"}, id="plain-but-ranges-expected"),
]


@pytest.mark.parametrize(("text", "expect", "expected"), BROKEN)
def test_broken_dump_yields_its_finding(text: str, expect: CaptureExpectations | None, expected: set[str]) -> None:
    findings, _ = check_rules(text, expect)
    assert ids(findings) == expected, explain(findings)


@pytest.mark.parametrize(("text", "expect", "expected"), BROKEN)
def test_broken_dump_findings_name_the_subject_in_one_line_with_evidence(
        text: str, expect: CaptureExpectations | None, expected: set[str]) -> None:
    findings, _ = check_rules(text, expect, subject="pod default/reviews")
    assert ids(findings) == expected
    for finding in findings:
        assert finding.subject == "pod default/reviews"
        assert finding.message.strip() and "\n" not in finding.message
        assert finding.evidence["probe"] and finding.evidence["landing"]


def test_unknown_match_is_named_in_the_message_and_reported_once() -> None:
    text = inserted_before(PLAIN, "-A ISTIO_OUTPUT", "-A ISTIO_OUTPUT -m mark --mark 0x1 -j RETURN")
    findings, results = check_rules(text)
    (finding,) = findings
    assert "-m mark --mark 0x1" in finding.message
    assert finding.evidence["rules"][-1] == "-A ISTIO_OUTPUT -m mark --mark 0x1 -j RETURN"
    assert {r.landing.verdict for r in results if r.probe.name.startswith("inbound:")} == {"redirect"}


def test_wrong_port_message_names_both_ports() -> None:
    findings, _ = check_rules(replaced(PLAIN, "--to-ports 15001", "--to-ports 15002"))
    assert findings
    assert all("15002" in f.message and "15001" in f.message for f in findings)


def test_dump_without_nat_table_is_reported() -> None:
    filter_only = FULL_TABLES.read_text(encoding="utf-8").split("*mangle")[0].rsplit("# Generated", 1)[0]
    assert "*filter" in filter_only and "*nat" not in filter_only
    findings, results = check_rules(filter_only, subject="dump.txt")
    (finding,) = findings
    assert (finding.id, finding.subject) == ("iptables.no-nat-table", "dump.txt")
    assert results == []


def test_plain_dump_when_include_ranges_are_expected_redirects_the_outside_probe() -> None:
    _, results = check_rules(PLAIN, WITH_RANGES)
    assert landings(results)["outbound:outside-ranges"] == "redirected to port 15001"


def test_other_proxy_port_expected() -> None:
    assert finding_ids(PLAIN, CaptureExpectations(proxy_port=15002)) == {
        "iptables.inbound-wrong-port", "iptables.outbound-wrong-port"}


def test_include_ranges_covering_every_sample_are_accepted() -> None:
    findings, _ = check_rules(PLAIN, CaptureExpectations(include_ranges=("0.0.0.0/0",)))
    assert findings == [], explain(findings)


# -- behaviour, not spelling -----------------------------------------------------------------------

RENAMED = re.sub(r' -m comment --comment "[^"]*"', "", PLAIN).replace("ISTIO_REDIRECT", "MESH_IN").replace(
    "ISTIO_OUTPUT", "MESH_OUT")

REORDERED = """\
*nat
:MESH_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:POSTROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:PREROUTING ACCEPT [0:0]
-A MESH_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -j MESH_REDIRECT
-A ISTIO_OUTPUT -j MESH_REDIRECT
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A PREROUTING -p tcp -j MESH_REDIRECT
COMMIT
"""

GOTO = replaced(replaced(PLAIN, "-j ISTIO_REDIRECT", "-g ISTIO_REDIRECT"), "-j ISTIO_OUTPUT", "-g ISTIO_OUTPUT")

OUTPUT_ONLY = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -m owner --uid-owner 1337 -j RETURN
-A OUTPUT -d 127.0.0.1/32 -j RETURN
-A OUTPUT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""


@pytest.mark.parametrize("text", [RENAMED, REORDERED, GOTO], ids=["renamed-chains", "reordered", "goto"])
def test_rules_with_the_right_behaviour_pass_whatever_their_spelling(text: str) -> None:
    findings, _ = check_rules(text)
    assert findings == [], explain(findings)


def test_renamed_dump_has_neither_istio_names_nor_comments() -> None:
    assert "ISTIO" not in RENAMED and "comment" not in RENAMED
    assert set(parse(RENAMED)["nat"]) >= {"MESH_IN", "MESH_OUT"}


def test_goto_dump_is_parsed_as_goto() -> None:
    assert "-j ISTIO" not in GOTO
    assert parse(GOTO)["nat"]["PREROUTING"].rules[0].goto is True


def test_redirect_in_output_only_misses_inbound_traffic() -> None:
    assert finding_ids(OUTPUT_ONLY) == {"iptables.inbound-not-captured"}


# -- evaluate() on single packets ------------------------------------------------------------------

def nat_table(*rules: str, policy: str = "ACCEPT") -> dict[str, Chain]:
    declarations = "".join(f":{name} {policy} [0:0]\n" for name in ("PREROUTING", "OUTPUT"))
    tables: Ruleset = parse("*nat\n" + declarations + "".join(rule + "\n" for rule in rules) + "COMMIT\n")
    return tables["nat"]


def outbound(uid: int | None = 0, out_iface: str = "eth0", dport: int = 9080) -> Packet:
    return Packet("OUTPUT", "10.251.0.10", "10.96.0.10", dport, out_iface=out_iface, uid=uid, gid=uid)


def inbound(in_iface: str = "eth0", dport: int = 9080) -> Packet:
    return Packet("PREROUTING", "198.51.100.7", "10.251.0.10", dport, in_iface=in_iface)


@pytest.mark.parametrize(("uid", "verdict"), [
    (999, "accept"),
    (2001, "accept"),
    (None, "accept"),
    (1000, "redirect"),
    (1500, "redirect"),
    (2000, "redirect"),
])
def test_evaluate_uid_owner_range(uid: int | None, verdict: str) -> None:
    table = nat_table("-A OUTPUT -m owner --uid-owner 1000-2000 -j REDIRECT --to-ports 15001")
    assert evaluate(table, outbound(uid=uid)).verdict == verdict


def test_evaluate_single_uid_owner() -> None:
    table = nat_table("-A OUTPUT -m owner --uid-owner 1337 -j RETURN", "-A OUTPUT -j REDIRECT --to-ports 15001")
    assert evaluate(table, outbound(uid=1337)).verdict == "accept"
    assert evaluate(table, outbound(uid=1000)).port == 15001


def test_evaluate_owner_name_is_unevaluable() -> None:
    table = nat_table("-A OUTPUT -m owner --uid-owner envoy -j RETURN")
    landing = evaluate(table, outbound(uid=1337))
    assert landing.verdict == "unknown" and "envoy" in landing.reason


@pytest.mark.parametrize(("out_iface", "verdict"), [("eth0", "redirect"), ("lo", "accept")])
def test_evaluate_negated_out_interface(out_iface: str, verdict: str) -> None:
    table = nat_table("-A OUTPUT ! -o lo -j REDIRECT --to-ports 15001")
    assert evaluate(table, outbound(out_iface=out_iface)).verdict == verdict


@pytest.mark.parametrize(("in_iface", "verdict"), [("eth0", "redirect"), ("eth12", "redirect"), ("veth0", "accept"),
                                                   ("lo", "accept")])
def test_evaluate_interface_wildcard(in_iface: str, verdict: str) -> None:
    table = nat_table("-A PREROUTING -i eth+ -p tcp -j REDIRECT --to-ports 15001")
    assert evaluate(table, inbound(in_iface=in_iface)).verdict == verdict


@pytest.mark.parametrize(("dport", "verdict"), [(80, "redirect"), (443, "redirect"), (8000, "redirect"),
                                                (8080, "redirect"), (22, "accept"), (8081, "accept")])
def test_evaluate_multiport_destination_ports(dport: int, verdict: str) -> None:
    table = nat_table("-A PREROUTING -p tcp -m multiport --dports 80,443,8000:8080 -j REDIRECT --to-ports 15001")
    assert evaluate(table, inbound(dport=dport)).verdict == verdict


def test_evaluate_multiport_ports_matches_the_source_port_too() -> None:
    table = nat_table("-A OUTPUT -p tcp -m multiport --ports 43210 -j REDIRECT --to-ports 15001")
    assert evaluate(table, outbound(dport=9080)).verdict == "redirect"


def test_evaluate_tcp_destination_port_range() -> None:
    table = nat_table("-A PREROUTING -p tcp -m tcp --dport 9000:9100 -j REDIRECT --to-ports 15001")
    assert evaluate(table, inbound(dport=9080)).verdict == "redirect"
    assert evaluate(table, inbound(dport=80)).verdict == "accept"


def test_evaluate_redirect_without_port_keeps_the_destination_port() -> None:
    table = nat_table("-A PREROUTING -p tcp -j REDIRECT")
    landing = evaluate(table, inbound(dport=9080))
    assert (landing.verdict, landing.port) == ("redirect", 9080)


def test_evaluate_non_terminating_target_goes_on() -> None:
    table = nat_table("-A OUTPUT -j LOG", "-A OUTPUT -j REDIRECT --to-ports 15001")
    landing = evaluate(table, outbound())
    assert landing.verdict == "redirect"
    assert landing.path == ("-A OUTPUT -j LOG", "-A OUTPUT -j REDIRECT --to-ports 15001")


def test_evaluate_dnat_names_the_destination() -> None:
    table = nat_table("-A OUTPUT -p tcp -j DNAT --to-destination 127.0.0.1:15001")
    assert evaluate(table, outbound()).describe() == "DNAT to 127.0.0.1:15001"


def test_evaluate_drop_policy_of_a_builtin_chain() -> None:
    assert evaluate(nat_table(policy="DROP"), outbound()).verdict == "drop"


@pytest.mark.parametrize("rule", [
    "-A OUTPUT -m mark --mark 0x1 -j RETURN",
    "-A OUTPUT -j NO_SUCH_CHAIN",
], ids=["unknown-match", "unknown-target"])
def test_evaluate_reports_what_it_cannot_evaluate(rule: str) -> None:
    landing = evaluate(nat_table(rule), outbound())
    assert landing.verdict == "unknown"
    assert landing.path[-1] == rule
    assert landing.reason
