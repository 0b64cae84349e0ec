"""Helpers of the project's own tests: settings for throwaway clusters that never clash."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from pytest_nginmesh.settings import Settings

NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nginx") is None or shutil.which("iptables") is None,
    reason="the local cluster needs root, nginx and iptables (run scripts/setup-host)",
)


# Several checkouts may run their tests on one host at once: each picks a slot (0-15) of its own.
TEST_SLOT = int(os.environ.get("NGINMESH_TEST_SLOT", "0"))


def cluster_settings(name: str, index: int) -> Settings:
    """A cluster of its own name and address ranges, so test clusters never clash with each other, the
    default cluster (10.212-214) or the benchmarks' clusters (10.220-228)."""
    return Settings(
        cluster_name=f"{name}{TEST_SLOT}" if TEST_SLOT else name,
        pod_cidr=f"10.{230 + index}.{16 * TEST_SLOT}.0/20",
        service_cidr=f"10.{240 + index}.{16 * TEST_SLOT}.0/20",
        link_cidr=f"10.{250 + index}.{16 * TEST_SLOT}.0/30",
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The PYTEST_NGINMESH_* variables that select these settings in a child process."""
    return {
        "PYTEST_NGINMESH_CLUSTER_NAME": settings.cluster_name,
        "PYTEST_NGINMESH_POD_CIDR": settings.pod_cidr,
        "PYTEST_NGINMESH_SERVICE_CIDR": settings.service_cidr,
        "PYTEST_NGINMESH_LINK_CIDR": settings.link_cidr,
    }


def ctrl_c_as_at_a_terminal() -> None:
    """``preexec_fn`` of a child that a test interrupts with SIGINT: a runner started in the background (``&``
    in a non-interactive shell, as CI may be) ignores SIGINT, its children inherit that, and Python then
    installs no KeyboardInterrupt handler. The child gets Ctrl-C's usual meaning back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
