"""The proxy_init program (pytest_nginmesh.workloads.proxy_init): its rule list, its flags, and the real iptables."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest

from pytest_nginmesh.workloads.proxy_init import parse_args, redirect_rules

COMMENT = re.compile(r' -m comment --comment ("[^"]*"|\S+)')

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="applying iptables rules in a network namespace needs root")
needs_iptables = pytest.mark.skipif(shutil.which("iptables") is None or shutil.which("iptables-save") is None,
                                    reason="iptables is not installed")

COMMON_RULES = [
    "-N ISTIO_REDIRECT",
    "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-port 15001",
    "-A PREROUTING -j ISTIO_REDIRECT",
    "-N ISTIO_OUTPUT",
    "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
    "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -j ISTIO_REDIRECT",
    "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
    "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
]


def summary(rule: list[str]) -> str:
    """A rule without its ``-t nat`` prefix and its comment match."""
    assert rule[:2] == ["-t", "nat"], f"rule outside the nat table: {rule}"
    return COMMENT.sub("", " ".join(rule[2:]))


# -- the rule list ---------------------------------------------------------------------------------


def test_rules_without_include_ranges_redirect_all_outbound() -> None:
    assert [summary(r) for r in redirect_rules(15001, 1337)] == [
        *COMMON_RULES,
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ]


def test_rules_with_include_ranges_redirect_only_those_ranges() -> None:
    assert [summary(r) for r in redirect_rules(15001, 1337, ["10.0.0.0/8", "172.16.0.0/12"])] == [
        *COMMON_RULES,
        "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -d 172.16.0.0/12 -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -j RETURN",
    ]


def test_implicit_loopback_redirect_comes_before_the_proxy_uid_bypass() -> None:
    output = [summary(r) for r in redirect_rules(15001, 1337) if r[3:4] == ["ISTIO_OUTPUT"] and r[2] == "-A"]
    loopback = output.index("-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -j ISTIO_REDIRECT")
    bypass = output.index("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN")
    explicit = output.index("-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN")
    assert loopback < bypass < explicit == len(output) - 2


def test_port_and_uid_are_taken_from_the_arguments() -> None:
    rules = [summary(r) for r in redirect_rules(15555, 4242)]
    assert "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-port 15555" in rules
    assert "-A ISTIO_OUTPUT -m owner --uid-owner 4242 -j RETURN" in rules


def test_every_appended_rule_carries_an_istio_comment() -> None:
    for rule in redirect_rules(15001, 1337, ["10.0.0.0/8"]):
        if "-A" in rule:
            assert rule[-4:-1] == ["-m", "comment", "--comment"]
            assert rule[-1].startswith("istio/")


# -- the flags -------------------------------------------------------------------------------------


def test_parse_args_reads_port_uid_and_ranges() -> None:
    args = parse_args(["-p", "15001", "-u", "1337", "-i", " 10.0.0.0/8, 172.16.0.0/12 ,"])
    assert (args.proxy_port, args.proxy_uid, args.include) == (15001, 1337, ["10.0.0.0/8", "172.16.0.0/12"])


def test_parse_args_without_ranges_gives_an_empty_list() -> None:
    assert parse_args(["-p", "15001", "-u", "1337"]).include == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([], "-p", id="nothing"),
        pytest.param(["-p", "15001"], "-u", id="no-uid"),
        pytest.param(["-u", "1337"], "-p", id="no-port"),
        pytest.param(["-p", "0", "-u", "1337"], "between 1 and 65535", id="port-0"),
        pytest.param(["-p", "65536", "-u", "1337"], "between 1 and 65535", id="port-65536"),
        pytest.param(["-p", "http", "-u", "1337"], "invalid int value", id="port-not-a-number"),
        pytest.param(["-p", "15001", "-u", "1337", "-i", "10.0.0.0/33"], "-i 10.0.0.0/33", id="prefix-33"),
        pytest.param(["-p", "15001", "-u", "1337", "-i", "10.0.0.0/8,bogus"], "-i bogus", id="second-cidr-bad"),
    ],
)
def test_bad_arguments_exit_with_status_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


# -- the rules applied with the real iptables ------------------------------------------------------


def apply_in(netns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "pytest_nginmesh.workloads.proxy_init", *args],
        capture_output=True, text=True, timeout=30,
    )


def nat_table(netns: str) -> list[str]:
    """The namespace's nat table as iptables-save prints it, comments removed."""
    saved = subprocess.run(["ip", "netns", "exec", netns, "iptables-save", "-t", "nat"],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    return [COMMENT.sub("", line) for line in saved.splitlines() if line.startswith((":", "-A"))]


def chain_rules(table: list[str], chain: str) -> list[str]:
    return [line for line in table if line.startswith(f"-A {chain} ")]


@needs_root
@needs_iptables
def test_default_rules_land_in_the_nat_table(make_netns: Callable[[], str]) -> None:
    netns = make_netns()
    result = apply_in(netns, "-p", "15001", "-u", "1337")
    assert result.returncode == 0, result.stderr
    assert "+ iptables -t nat -N ISTIO_REDIRECT" in result.stdout
    table = nat_table(netns)
    assert ":ISTIO_REDIRECT - [0:0]" in table
    assert ":ISTIO_OUTPUT - [0:0]" in table
    assert chain_rules(table, "PREROUTING") == ["-A PREROUTING -j ISTIO_REDIRECT"]
    assert chain_rules(table, "OUTPUT") == ["-A OUTPUT -p tcp -j ISTIO_OUTPUT"]
    assert chain_rules(table, "ISTIO_REDIRECT") == ["-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001"]
    assert chain_rules(table, "ISTIO_OUTPUT") == [
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
    ]


@needs_root
@needs_iptables
def test_include_ranges_land_in_the_nat_table(make_netns: Callable[[], str]) -> None:
    netns = make_netns()
    result = apply_in(netns, "-p", "15001", "-u", "1337", "-i", "10.0.0.0/8,172.16.0.0/12")
    assert result.returncode == 0, result.stderr
    table = nat_table(netns)
    assert chain_rules(table, "ISTIO_REDIRECT") == ["-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001"]
    assert chain_rules(table, "ISTIO_OUTPUT") == [
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -d 172.16.0.0/12 -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -j RETURN",
    ]


@needs_root
@needs_iptables
def test_a_failing_iptables_command_fails_the_program(make_netns: Callable[[], str]) -> None:
    netns = make_netns()
    assert apply_in(netns, "-p", "15001", "-u", "1337").returncode == 0
    again = apply_in(netns, "-p", "15001", "-u", "1337")  # the ISTIO_REDIRECT chain exists now
    assert again.returncode != 0
    assert again.stderr.strip()
    assert again.stdout.strip().splitlines() == ["+ iptables -t nat -N ISTIO_REDIRECT"]
