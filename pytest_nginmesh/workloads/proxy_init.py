"""The ``proxy_init`` image: the prepare_proxy.sh rule set, applied with the real iptables."""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys


def redirect_rules(proxy_port: int, proxy_uid: int, include_ranges: list[str] | None = None) -> list[list[str]]:
    """The iptables commands (without the ``iptables`` word) prepare_proxy.sh runs, in order."""

    def rule(*args: str, comment: str) -> list[str]:
        return ["-t", "nat", *args, "-m", "comment", "--comment", f"istio/{comment}"]

    rules = [
        ["-t", "nat", "-N", "ISTIO_REDIRECT"],
        rule("-A", "ISTIO_REDIRECT", "-p", "tcp", "-j", "REDIRECT", "--to-port", str(proxy_port),
             comment="redirect-to-envoy-port"),
        rule("-A", "PREROUTING", "-j", "ISTIO_REDIRECT", comment="install-istio-prerouting"),
        ["-t", "nat", "-N", "ISTIO_OUTPUT"],
        rule("-A", "OUTPUT", "-p", "tcp", "-j", "ISTIO_OUTPUT", comment="install-istio-output"),
        rule("-A", "ISTIO_OUTPUT", "-o", "lo", "!", "-d", "127.0.0.1/32", "-j", "ISTIO_REDIRECT",
             comment="redirect-implicit-loopback"),
        rule("-A", "ISTIO_OUTPUT", "-m", "owner", "--uid-owner", str(proxy_uid), "-j", "RETURN",
             comment="bypass-envoy"),
        rule("-A", "ISTIO_OUTPUT", "-d", "127.0.0.1/32", "-j", "RETURN", comment="bypass-explicit-loopback"),
    ]
    if include_ranges:
        for cidr in include_ranges:
            rules.append(rule("-A", "ISTIO_OUTPUT", "-d", cidr, "-j", "ISTIO_REDIRECT",
                              comment="redirect-ip-range-" + cidr))
        rules.append(rule("-A", "ISTIO_OUTPUT", "-j", "RETURN", comment="bypass-default-outbound"))
    else:
        rules.append(rule("-A", "ISTIO_OUTPUT", "-j", "ISTIO_REDIRECT", comment="redirect-default-outbound"))
    return rules


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prepare_proxy.sh", description="Redirect pod TCP traffic to the proxy.")
    parser.add_argument("-p", dest="proxy_port", type=int, required=True, help="proxy port")
    parser.add_argument("-u", dest="proxy_uid", type=int, required=True, help="uid of the proxy process")
    parser.add_argument("-i", dest="include", default="", help="comma separated outbound CIDRs to capture")
    args = parser.parse_args(argv)
    if not 0 < args.proxy_port < 65536:
        parser.error(f"-p {args.proxy_port}: give a port between 1 and 65535")
    ranges = [r.strip() for r in args.include.split(",") if r.strip()]
    for cidr in ranges:
        try:
            ipaddress.IPv4Network(cidr, strict=False)
        except ValueError:
            parser.error(f"-i {cidr}: give IPv4 CIDRs such as 10.0.0.0/8")
    args.include = ranges
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for rule in redirect_rules(args.proxy_port, args.proxy_uid, args.include):
        command = ["iptables", *rule]
        print("+", " ".join(command), flush=True)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stderr.strip(), file=sys.stderr, flush=True)
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
