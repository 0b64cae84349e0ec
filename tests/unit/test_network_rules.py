"""kube-proxy's nat rules and address allocation (cluster.local.network), and the host route check (system)."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Callable

import pytest

from pytest_nginmesh.cluster.local.network import Allocator, ServicePort, service_nat_rules
from pytest_nginmesh.cluster.local.system import find_route_clash
from pytest_nginmesh.errors import ClusterError

NODE_IP = "10.212.0.2"
PRODUCTPAGE = ServicePort(
    namespace="default", service="productpage", name="http", protocol="TCP", port=9080,
    cluster_ip="10.214.0.10", node_port=31380,
    endpoints=(("10.213.0.2", 9080), ("10.213.0.3", 9080), ("10.213.0.4", 9080)),
)
REVIEWS = ServicePort(
    namespace="default", service="reviews", name="http", protocol="TCP", port=9080,
    cluster_ip="10.214.0.11", node_port=None, endpoints=(("10.213.0.5", 9081),),
)
RATINGS_WITHOUT_ENDPOINTS = ServicePort(
    namespace="default", service="ratings", name="http", protocol="TCP", port=9080,
    cluster_ip="10.214.0.12", node_port=31999, endpoints=(),
)
PROBABILITY = re.compile(r"-m statistic --mode random --probability (\S+) -j (KUBE-SEP-\w+)$")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="iptables-restore in a network namespace needs root")
needs_iptables = pytest.mark.skipif(shutil.which("iptables-restore") is None, reason="iptables is not installed")


@pytest.fixture(scope="module")
def rules_text() -> str:
    return service_nat_rules([PRODUCTPAGE, REVIEWS, RATINGS_WITHOUT_ENDPOINTS], NODE_IP)


@pytest.fixture(scope="module")
def rules(rules_text: str) -> list[str]:
    return [line for line in rules_text.splitlines() if line.startswith("-A ")]


def chain(rules: list[str], name: str) -> list[str]:
    return [line.removeprefix(f"-A {name} ") for line in rules if line.startswith(f"-A {name} ")]


# -- the rules text --------------------------------------------------------------------------------


def test_text_is_one_nat_table_ending_in_commit(rules_text: str) -> None:
    lines = rules_text.splitlines()
    assert lines[0] == "*nat"
    assert lines[-1] == "COMMIT"
    assert rules_text.endswith("COMMIT\n")


def test_every_jump_target_is_a_declared_chain(rules_text: str, rules: list[str]) -> None:
    declared = set(re.findall(r"^:(\S+) ", rules_text, re.MULTILINE))
    targets = {m for line in rules for m in re.findall(r"-j (KUBE-[\w-]+)", line)}
    assert targets <= declared
    assert {PRODUCTPAGE.chain, REVIEWS.chain} <= declared


def test_cluster_ip_rules_jump_to_the_service_chains(rules: list[str]) -> None:
    assert chain(rules, "KUBE-SERVICES")[:2] == [
        f'-d 10.214.0.10/32 -p tcp -m tcp --dport 9080 -m comment --comment "default/productpage:http" '
        f"-j {PRODUCTPAGE.chain}",
        f'-d 10.214.0.11/32 -p tcp -m tcp --dport 9080 -m comment --comment "default/reviews:http" '
        f"-j {REVIEWS.chain}",
    ]


def test_node_port_rule_only_for_the_service_with_a_node_port(rules: list[str]) -> None:
    assert chain(rules, "KUBE-NODEPORTS") == [
        f'-p tcp -m tcp --dport 31380 -m comment --comment "default/productpage:http" -j {PRODUCTPAGE.chain}',
    ]


def test_node_ports_are_reached_last_through_the_node_ip(rules: list[str]) -> None:
    assert chain(rules, "KUBE-SERVICES")[-1] == f"-d {NODE_IP}/32 -j KUBE-NODEPORTS"


def test_three_endpoints_get_one_third_one_half_then_the_rest(rules: list[str]) -> None:
    steps = chain(rules, PRODUCTPAGE.chain)
    assert len(steps) == 3
    first, second = PROBABILITY.search(steps[0]), PROBABILITY.search(steps[1])
    assert first is not None and second is not None
    assert float(first.group(1)) == pytest.approx(1 / 3, abs=1e-10)
    assert float(second.group(1)) == pytest.approx(1 / 2, abs=1e-10)
    assert re.fullmatch(r"-j KUBE-SEP-\w+", steps[2])
    assert len({first.group(2), second.group(2), steps[2].removeprefix("-j ")}) == 3


def test_single_endpoint_is_unconditional(rules: list[str]) -> None:
    (step,) = chain(rules, REVIEWS.chain)
    assert re.fullmatch(r"-j KUBE-SEP-\w+", step)


def test_endpoint_chains_mark_hairpin_traffic_and_dnat(rules: list[str]) -> None:
    endpoint_chains = [step.rsplit("-j ", 1)[1] for step in chain(rules, PRODUCTPAGE.chain)]
    for endpoint_chain, (ip, port) in zip(endpoint_chains, PRODUCTPAGE.endpoints, strict=True):
        assert endpoint_chain.startswith("KUBE-SEP-")
        assert chain(rules, endpoint_chain) == [
            f"-s {ip}/32 -j KUBE-MARK-MASQ",
            f"-p tcp -m tcp -j DNAT --to-destination {ip}:{port}",
        ]
    (reviews_step,) = chain(rules, REVIEWS.chain)
    reviews_endpoint = reviews_step.removeprefix("-j ")
    assert chain(rules, reviews_endpoint)[-1] == "-p tcp -m tcp -j DNAT --to-destination 10.213.0.5:9081"


def test_hairpin_mark_and_snat_to_the_node_ip(rules: list[str]) -> None:
    assert chain(rules, "KUBE-MARK-MASQ") == ["-j MARK --set-xmark 0x4000/0x4000"]
    assert chain(rules, "KUBE-POSTROUTING") == [
        f'-m mark --mark 0x4000/0x4000 -m comment --comment "hairpin" -j SNAT --to-source {NODE_IP}']
    assert chain(rules, "POSTROUTING") == ["-j KUBE-POSTROUTING"]


def test_service_without_endpoints_gets_no_rule(rules_text: str) -> None:
    assert "default/ratings" not in rules_text
    assert "10.214.0.12" not in rules_text
    assert "31999" not in rules_text
    assert RATINGS_WITHOUT_ENDPOINTS.chain not in rules_text


def test_no_services_still_installs_the_portals() -> None:
    text = service_nat_rules([], NODE_IP)
    assert '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in text
    assert "KUBE-SVC-" not in text


def test_chain_names_fit_iptables_and_differ_per_service_port() -> None:
    other_port = ServicePort(**{**PRODUCTPAGE.__dict__, "port": 9443})
    names = {PRODUCTPAGE.chain, REVIEWS.chain, other_port.chain}
    assert len(names) == 3
    assert all(len(n) <= 28 for n in names)


def restore_in(netns: str, text: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, "iptables-restore", *flags],
                          input=text, capture_output=True, text=True, timeout=30)


@needs_root
@needs_iptables
def test_rules_pass_iptables_restore_test(rules_text: str, make_netns: Callable[[], str]) -> None:
    result = restore_in(make_netns(), rules_text, "--test")
    assert result.returncode == 0, result.stderr


@needs_root
@needs_iptables
def test_iptables_restore_test_rejects_a_broken_rule(rules_text: str, make_netns: Callable[[], str]) -> None:
    """The check above can fail: an out-of-range port is reported with its line."""
    broken = rules_text.replace("--dport 31380", "--dport 99999")
    assert broken != rules_text
    result = restore_in(make_netns(), broken, "--test")
    assert result.returncode != 0
    assert "Error occurred at line" in result.stderr


@needs_root
@needs_iptables
def test_rules_load_into_a_real_nat_table(rules_text: str, make_netns: Callable[[], str]) -> None:
    """A real restore also resolves every jump (``--test`` on the nf_tables backend does not)."""
    netns = make_netns()
    result = restore_in(netns, rules_text)
    assert result.returncode == 0, result.stderr
    saved = subprocess.run(["ip", "netns", "exec", netns, "iptables-save", "-t", "nat"],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    steps = [line for line in saved.splitlines() if line.startswith(f"-A {PRODUCTPAGE.chain} ")]
    assert len(steps) == 3
    assert "--probability 0.333" in steps[0] and "--probability 0.5" in steps[1]
    assert "DNAT --to-destination 10.213.0.5:9081" in saved
    assert f"SNAT --to-source {NODE_IP}" in saved


# -- host routes -----------------------------------------------------------------------------------

RANGES = ["10.213.0.0/16", "10.214.0.0/16", "10.212.0.0/30"]


def test_route_inside_our_range_names_the_range_and_the_fix() -> None:
    routes = [{"dst": "default", "gateway": "192.168.1.1", "dev": "eth0"},
              {"dst": "10.213.7.0/24", "dev": "docker0"}]
    message = find_route_clash(RANGES, routes, set())
    assert message is not None
    assert "range 10.213.0.0/16 clashes with the host route 10.213.7.0/24 dev docker0" in message
    assert "--pod-cidr" in message and "PYTEST_NGINMESH_POD_CIDR" in message


def test_route_covering_our_range_clashes() -> None:
    message = find_route_clash(RANGES, [{"dst": "10.0.0.0/8", "dev": "tun0"}], set())
    assert message is not None and "range 10.213.0.0/16" in message


def test_host_route_without_prefix_is_a_single_address() -> None:
    assert find_route_clash(RANGES, [{"dst": "10.214.0.7", "dev": "wg0"}], set()) is not None
    assert find_route_clash(RANGES, [{"dst": "10.215.0.7", "dev": "wg0"}], set()) is None


def test_default_route_is_ignored() -> None:
    assert find_route_clash(RANGES, [{"dst": "default", "gateway": "10.213.0.1", "dev": "eth0"}], set()) is None


def test_our_own_link_is_ignored() -> None:
    routes = [{"dst": "10.212.0.0/30", "dev": "nmh0123456789"},
              {"dst": "10.213.0.0/16", "gateway": "10.212.0.2", "dev": "nmh0123456789"}]
    assert find_route_clash(RANGES, routes, {"nmh0123456789"}) is None
    assert find_route_clash(RANGES, routes, set()) is not None


def test_local_and_broadcast_routes_are_ignored() -> None:
    routes = [{"type": "local", "dst": "10.213.0.1", "dev": "lo"},
              {"type": "broadcast", "dst": "10.213.255.255", "dev": "eth0"}]
    assert find_route_clash(RANGES, routes, set()) is None


def test_disjoint_routes_are_clear() -> None:
    routes = [{"dst": "192.168.0.0/16", "dev": "eth0"}, {"dst": "172.17.0.0/16", "dev": "docker0"}]
    assert find_route_clash(RANGES, routes, set()) is None


# -- the allocator ---------------------------------------------------------------------------------


def test_allocator_hands_out_each_address_once_and_then_refuses() -> None:
    allocator = Allocator("10.0.0.0/29")
    handed = [allocator.allocate() for _ in range(5)]
    assert len(set(handed)) == 5
    assert "10.0.0.1" not in handed
    assert all(ipaddress.IPv4Address(a) in ipaddress.IPv4Network("10.0.0.0/29") for a in handed)
    with pytest.raises(ClusterError, match=re.escape("range 10.0.0.0/29 is exhausted")):
        allocator.allocate()


def test_slash_30_has_a_single_address() -> None:
    allocator = Allocator("10.0.0.0/30")
    assert allocator.allocate() == "10.0.0.2"
    with pytest.raises(ClusterError, match="exhausted: give a larger range"):
        allocator.allocate()


def test_released_address_can_be_handed_out_again() -> None:
    allocator = Allocator("10.0.0.0/30")
    address = allocator.allocate()
    allocator.release(address)
    assert allocator.allocate() == address


def test_wanted_address_is_honoured_and_not_handed_out_again() -> None:
    allocator = Allocator("10.0.0.0/29")
    assert allocator.allocate("10.0.0.2") == "10.0.0.2"
    assert allocator.allocate() == "10.0.0.3"
    with pytest.raises(ClusterError, match=re.escape("10.0.0.2 is already taken")):
        allocator.allocate("10.0.0.2")


def test_wanted_address_outside_the_range_is_refused() -> None:
    with pytest.raises(ClusterError, match=re.escape("10.0.1.2 is not a usable address of")):
        Allocator("10.0.0.0/30").allocate("10.0.1.2")


def test_taking_the_last_address_exhausts_the_range() -> None:
    allocator = Allocator("10.0.0.0/30")
    allocator.allocate("10.0.0.2")
    with pytest.raises(ClusterError, match="exhausted"):
        allocator.allocate()
