"""The plugin's options, ini keys and errors, seen from a real pytest run (pytester)."""

from __future__ import annotations

import pytest

# Options are validated only when a test wants the mesh: this one does.
USES_SETTINGS = "def test_uses_the_mesh_settings(nginmesh_settings):\n    pass\n"


def test_help_shows_the_nginmesh_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*Nginmesh conformance:*", "*--nginmesh-cluster=KIND*",
                                 "*--nginmesh-cluster-name=NAME*", "*--nginmesh-keep-cluster*"])


def test_unknown_cluster_kind_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_SETTINGS)
    result = pytester.runpytest("--nginmesh-cluster=minikube")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown cluster kind 'minikube': choose one of local, kind, kubeadm, existing*"])


def test_bad_cluster_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_SETTINGS)
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
    pytester.makepyfile(USES_SETTINGS)
    pytester.makeini("""
        [pytest]
        nginmesh_keep_cluster = maybe
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad value 'maybe' for nginmesh_keep_cluster: use true or false*"])


def test_timeouts_from_ini_and_options(pytester: pytest.Pytester) -> None:
    pytester.makeini("""
        [pytest]
        nginmesh_timeouts = pod_ready=120 convergence=45
    """)
    pytester.makepyfile("""
        def test_timeouts(nginmesh_settings):
            assert nginmesh_settings.timeouts.pod_ready == 120
            assert nginmesh_settings.timeouts.convergence == 7
    """)
    pytester.runpytest("--nginmesh-timeout", "convergence=7").assert_outcomes(passed=1)


def test_bad_timeout_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_SETTINGS)
    result = pytester.runpytest("--nginmesh-timeout", "forever=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad timeout 'forever=1': give NAME=SECONDS with NAME one of*"])


def test_features_not_claimed_are_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.conformance(name="delay", features=["fault-delay"])
        def test_delay():
            pass

        @pytest.mark.conformance(name="weights", features=["routing-weighted"])
        def test_weights():
            pass

        @pytest.mark.conformance(name="retries", features=["routing-retries"])
        def test_retries():
            pass
    """)
    result = pytester.runpytest("-rs", "--nginmesh-profile=nginmesh-0.2.12",
                                "--nginmesh-exempt-features=routing-retries")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*feature fault-delay not claimed by profile nginmesh-0.2.12*",
                                 "*feature routing-retries exempted (--nginmesh-exempt-features)*"])
    pytester.runpytest("--nginmesh-supported-features=fault-delay").assert_outcomes(passed=1, skipped=2)


def test_unknown_feature_in_a_marker_or_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.conformance(name="teleport", features=["routing-teleport"])
        def test_teleport():
            pass
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown feature(s) routing-teleport*"])
    pytester.makepyfile(USES_SETTINGS)
    result = pytester.runpytest("--nginmesh-exempt-features=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--nginmesh-exempt-features: unknown feature(s) nope; known:*"])
