"""The node and pod network of the local cluster: namespaces, veths, routes, kube-proxy rules, hosts files."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ClusterError
from . import system

GATEWAY = "169.254.1.1"
ETC_NETNS = Path("/etc/netns")
# Names resolve through each pod's /etc/hosts; no cluster DNS runs, and a pod never asks the host's nameserver
# (outside every namespace the cluster made). A lookup /etc/hosts cannot answer fails at once (nothing listens on
# the pod's own port 53) instead of after the resolver's 5 s timeout: Python's HTTPServer, for one, looks up its
# bind address's name as it starts.
POD_RESOLV_CONF = "nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n"
MASQ_MARK = "0x4000/0x4000"


def netns_prefix(cluster: str) -> str:
    # '_' is legal neither in cluster names nor in Kubernetes names, so prefixes never overlap.
    return f"nm_{cluster}_"


def node_netns(cluster: str) -> str:
    return f"{netns_prefix(cluster)}node"


def pod_netns(cluster: str, namespace: str, pod: str) -> str:
    return f"{netns_prefix(cluster)}{namespace}_{pod}"


def host_link(cluster: str) -> str:
    return "nmh" + hashlib.sha1(cluster.encode()).hexdigest()[:10]


def pod_link(pod_uid: str) -> str:
    return "nmp" + hashlib.sha1(pod_uid.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Addresses:
    """The address plan of one local cluster."""

    pod_cidr: str
    service_cidr: str
    link_cidr: str

    @property
    def host_ip(self) -> str:
        return str(next(ipaddress.IPv4Network(self.link_cidr).hosts()))

    @property
    def node_ip(self) -> str:
        hosts = ipaddress.IPv4Network(self.link_cidr).hosts()
        next(hosts)
        return str(next(hosts))

    @property
    def link_prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.link_cidr).prefixlen


@dataclass
class Allocator:
    """Hands out addresses of a range, never the network's first address, and takes them back."""

    cidr: str
    used: set[str] = field(default_factory=set)

    def allocate(self, wanted: str | None = None) -> str:
        network = ipaddress.IPv4Network(self.cidr)
        if wanted:
            address = ipaddress.IPv4Address(wanted)
            if address not in network or address in (network.network_address, network.broadcast_address):
                raise ClusterError(f"address {wanted} is not a usable address of {self.cidr}")
            if wanted in self.used:
                raise ClusterError(f"address {wanted} is already taken")
            self.used.add(wanted)
            return wanted
        for address in network.hosts():
            candidate = str(address)
            # The first host address stays free, as Kubernetes keeps it for the API server's Service.
            if candidate not in self.used and address != network.network_address + 1:
                self.used.add(candidate)
                return candidate
        raise ClusterError(f"range {self.cidr} is exhausted: give a larger range")

    def release(self, address: str) -> None:
        self.used.discard(address)


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service as kube-proxy programs it."""

    namespace: str
    service: str
    name: str
    protocol: str
    port: int
    cluster_ip: str
    node_port: int | None
    endpoints: tuple[tuple[str, int], ...]

    @property
    def chain(self) -> str:
        return _chain("KUBE-SVC-", f"{self.namespace}/{self.service}:{self.name}:{self.port}/{self.protocol}")


def _chain(prefix: str, seed: str) -> str:
    return prefix + hashlib.sha256(seed.encode()).hexdigest()[:16].upper()


def service_nat_rules(ports: list[ServicePort], node_ip: str) -> str:
    """The node's whole nat table, as iptables-restore input: kube-proxy's iptables mode, in small."""
    chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"]
    rules = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A POSTROUTING -j KUBE-POSTROUTING",
        f"-A KUBE-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}",
        f'-A KUBE-POSTROUTING -m mark --mark {MASQ_MARK} -m comment --comment "hairpin" '
        f"-j SNAT --to-source {node_ip}",
    ]
    for sp in ports:
        if not sp.endpoints:
            continue
        proto = sp.protocol.lower()
        comment = f'-m comment --comment "{sp.namespace}/{sp.service}:{sp.name}"'
        chains.append(sp.chain)
        rules.append(f"-A KUBE-SERVICES -d {sp.cluster_ip}/32 -p {proto} -m {proto} --dport {sp.port} "
                     f"{comment} -j {sp.chain}")
        if sp.node_port:
            rules.append(f"-A KUBE-NODEPORTS -p {proto} -m {proto} --dport {sp.node_port} {comment} -j {sp.chain}")
        remaining = len(sp.endpoints)
        for ip, port in sp.endpoints:
            endpoint_chain = _chain("KUBE-SEP-", f"{sp.chain}/{ip}:{port}")
            chains.append(endpoint_chain)
            if remaining > 1:
                rules.append(f"-A {sp.chain} -m statistic --mode random --probability {1 / remaining:.11f} "
                             f"-j {endpoint_chain}")
            else:
                rules.append(f"-A {sp.chain} -j {endpoint_chain}")
            remaining -= 1
            rules.append(f"-A {endpoint_chain} -s {ip}/32 -j KUBE-MARK-MASQ")
            rules.append(f"-A {endpoint_chain} -p {proto} -m {proto} -j DNAT --to-destination {ip}:{port}")
    rules.append(f"-A KUBE-SERVICES -d {node_ip}/32 -j KUBE-NODEPORTS")
    head = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
            ":POSTROUTING ACCEPT [0:0]"]
    return "\n".join([*head, *(f":{c} - [0:0]" for c in chains), *rules, "COMMIT", ""])


class NodeNetwork:
    """The node namespace every pod is routed through, joined to the host by one veth."""

    def __init__(self, cluster: str, addresses: Addresses, grace: float) -> None:
        self.cluster = cluster
        self.addresses = addresses
        self.grace = grace
        self.node = node_netns(cluster)
        self.link = host_link(cluster)

    def _node(self, *args: str) -> None:
        system.run(["ip", "-n", self.node, *args])

    def create(self, route_cidrs: list[str]) -> None:
        a = self.addresses
        system.run(["ip", "netns", "add", self.node])
        self._node("link", "set", "lo", "up")
        system.run(["ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                    "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                    "net.ipv4.conf.default.proxy_arp=1"])
        system.run(["ip", "link", "add", self.link, "type", "veth", "peer", "name", "host0", "netns", self.node])
        system.run(["ip", "addr", "add", f"{a.host_ip}/{a.link_prefixlen}", "dev", self.link])
        system.run(["ip", "link", "set", self.link, "up"])
        self._node("addr", "add", f"{a.node_ip}/{a.link_prefixlen}", "dev", "host0")
        self._node("link", "set", "host0", "up")
        # Proxy ARP answers for the pods' gateway only if the node has a route to it elsewhere.
        self._node("route", "add", f"{GATEWAY}/32", "dev", "host0")
        for cidr in route_cidrs:
            system.run(["ip", "route", "add", cidr, "via", a.node_ip, "dev", self.link])
        self.program_services([])

    def add_pod(self, netns: str, link: str, pod_ip: str) -> None:
        system.run(["ip", "netns", "add", netns])
        try:
            system.run(["ip", "link", "add", link, "netns", self.node, "type", "veth",
                        "peer", "name", "eth0", "netns", netns])
            system.run(["ip", "-n", netns, "link", "set", "lo", "up"])
            system.run(["ip", "-n", netns, "addr", "add", f"{pod_ip}/32", "dev", "eth0"])
            system.run(["ip", "-n", netns, "link", "set", "eth0", "up"])
            system.run(["ip", "-n", netns, "route", "add", GATEWAY, "dev", "eth0", "scope", "link"])
            system.run(["ip", "-n", netns, "route", "add", "default", "via", GATEWAY, "dev", "eth0"])
            system.run(["ip", "netns", "exec", self.node, "sysctl", "-qw", f"net.ipv4.conf.{link}.proxy_arp=1"])
            self._node("link", "set", link, "up")
            self._node("route", "add", f"{pod_ip}/32", "dev", link, "scope", "link")
        except Exception:
            self.remove_pod(netns)
            raise

    def remove_pod(self, netns: str) -> None:
        system.delete_netns(netns, self.grace)
        shutil.rmtree(ETC_NETNS / netns, ignore_errors=True)

    def program_services(self, ports: list[ServicePort]) -> None:
        system.run(["ip", "netns", "exec", self.node, "iptables-restore"],
                   input=service_nat_rules(ports, self.addresses.node_ip))

    def write_hosts(self, netns: str, pod_name: str, pod_ip: str, names: dict[str, list[str]]) -> None:
        """The pod's /etc/hosts (its own name and every Service's), and once its /etc/resolv.conf
        (POD_RESOLV_CONF), both bound in place by ``ip netns exec``."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", f"{pod_ip}\t{pod_name}"]
        lines += [f"{ip}\t{' '.join(aliases)}" for ip, aliases in sorted(names.items())]
        directory = ETC_NETNS / netns
        for attempt in range(3):  # another cluster's teardown may remove an empty /etc/netns meanwhile
            directory.mkdir(parents=True, exist_ok=True)
            temporary = directory / "hosts.tmp"
            try:
                temporary.write_text("\n".join(lines) + "\n")
                temporary.replace(directory / "hosts")
                resolv = directory / "resolv.conf"
                if not resolv.exists():
                    resolv.write_text(POD_RESOLV_CONF)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise


def own_namespaces(cluster: str) -> list[str]:
    """The network namespaces this cluster created, pods before the node they are routed through."""
    prefix = netns_prefix(cluster)
    return sorted((n for n in system.netns_list() if n.startswith(prefix)), key=lambda n: n == node_netns(cluster))


def own_hosts_dirs(cluster: str) -> list[Path]:
    """The cluster's ``/etc/netns/<netns>`` entries (its pods' /etc/hosts); another cluster's never match,
    as ``_`` ends the prefix and is legal in no cluster name."""
    return sorted(ETC_NETNS.glob(netns_prefix(cluster) + "*")) if ETC_NETNS.is_dir() else []


def remove_hosts_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    if directory.exists():
        raise ClusterError(f"could not remove {directory}")
    # Another cluster may be writing its hosts files right now: an /etc/netns in use stays.
    with contextlib.suppress(OSError):
        ETC_NETNS.rmdir()
