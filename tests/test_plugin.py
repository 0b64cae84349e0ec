"""The plugin's options, ini keys and errors, seen from a real pytest run (pytester)."""

from __future__ import annotations

import pytest


def test_help_shows_the_nginmesh_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*Nginmesh conformance:*", "*--nginmesh-cluster=KIND*",
                                 "*--nginmesh-cluster-name=NAME*", "*--nginmesh-keep-cluster*"])


def test_unknown_cluster_kind_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--nginmesh-cluster=minikube")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown cluster kind 'minikube': choose one of local, kind, kubeadm, existing*"])


@pytest.mark.parametrize("kind", ["kind", "kubeadm", "existing"])
def test_kubernetes_kinds_are_reserved_with_a_clear_error(pytester: pytest.Pytester, kind: str) -> None:
    result = pytester.runpytest(f"--nginmesh-cluster={kind}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--nginmesh-cluster={kind} is not available yet*use --nginmesh-cluster=local*"])


def test_bad_cluster_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--nginmesh-cluster-name=Bad_Name")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad cluster name 'Bad_Name'*lowercase*"])


def test_settings_come_from_ini_env_and_options_in_that_order(pytester: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("""
        [pytest]
        nginmesh_cluster_name = from-ini
        nginmesh_keep_cluster = true
    """)
    pytester.makepyfile("""
        import os

        def test_settings(nginmesh_settings):
            expected = os.environ["EXPECTED_NAME"]
            assert nginmesh_settings.cluster_name == expected
            assert nginmesh_settings.keep_cluster is True
            assert nginmesh_settings.pod_cidr == "10.99.0.0/16"
    """)
    monkeypatch.setenv("PYTEST_NGINMESH_POD_CIDR", "10.99.0.0/16")
    monkeypatch.setenv("PYTEST_NGINMESH_CLUSTER_NAME", "from-env")
    monkeypatch.setenv("EXPECTED_NAME", "from-ini")
    pytester.runpytest().assert_outcomes(passed=1)
    monkeypatch.setenv("EXPECTED_NAME", "from-option")
    pytester.runpytest("--nginmesh-cluster-name=from-option").assert_outcomes(passed=1)


def test_bad_ini_boolean_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("""
        [pytest]
        nginmesh_keep_cluster = maybe
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad value 'maybe' for nginmesh_keep_cluster: use true or false*"])
