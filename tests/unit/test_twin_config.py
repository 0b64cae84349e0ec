"""The local twin of each release: the installer renders what the profile says of the release into the
ConfigMaps its agents and mixer read, and they read it back (pytest_nginmesh.mesh.manifests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from helpers import loopback_server

from pytest_nginmesh.errors import ManifestError
from pytest_nginmesh.mesh.manifests import (
    AGENT_CONFIG_KEY,
    AGENT_CONFIG_MAP,
    MIXER_CONFIG_MAP,
    AgentConfig,
    agent_config_map,
    control_plane,
)
from pytest_nginmesh.profiles import ISTIO_RENDERING, NGINMESH_RENDERING, PROFILES, get_profile
from pytest_nginmesh.workloads.agent import release_config


def serving(body: object | None) -> Iterator[str]:
    """A Pilot on loopback answering /v1/agent-config with ``body`` (404 when None)."""

    class Pilot(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            data = json.dumps(body or {"message": "not found"}).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with loopback_server(Pilot) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def pilot_with_the_twin_config() -> Iterator[str]:
    yield from serving(agent_config_map(get_profile("nginmesh-0.3.0")))


@pytest.fixture
def pilot_without_it() -> Iterator[str]:
    yield from serving(None)


def test_the_agent_takes_its_release_from_pilot(pilot_with_the_twin_config: str) -> None:
    config = release_config(pilot_with_the_twin_config, flag_refresh=1.0)
    assert (config.release, config.refresh_period, config.route_rendering) == ("nginmesh-0.3.0", 5.0,
                                                                                NGINMESH_RENDERING)


def test_without_the_config_map_the_agent_keeps_istios_semantics_at_its_flags_period(pilot_without_it: str) -> None:
    assert release_config(pilot_without_it, flag_refresh=1.0) == AgentConfig.reference(1.0)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_the_agent_reads_back_what_the_profile_says(name: str) -> None:
    profile = get_profile(name)
    configmap = agent_config_map(profile)
    config = AgentConfig.parse(configmap["data"][AGENT_CONFIG_KEY], "test")
    assert config == AgentConfig(name, profile.agent_refresh_period, profile.route_rendering, profile.redirect_status,
                                 profile.versioned_push)
    assert config.redirect_status("ingress") == profile.redirect_status
    assert config.redirect_status("sidecar") == 302  # nginmesh template.go: sidecars return 302


def test_the_releases_poll_every_5s_and_render_as_nginmesh_while_local_keeps_istios_semantics() -> None:
    for name in ("nginmesh-0.2.12", "nginmesh-0.3.0", "nginmesh-0.7.1"):
        assert (get_profile(name).agent_refresh_period, get_profile(name).route_rendering) == (5.0, NGINMESH_RENDERING)
    assert get_profile("local").route_rendering == ISTIO_RENDERING
    assert get_profile("local").agent_refresh_period == 1.0


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_the_control_plane_carries_the_profiles_config_maps_before_any_workload(name: str) -> None:
    objects = control_plane(get_profile(name))
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert kinds[0] == ("Namespace", "istio-system")
    assert kinds[1:3] == [("ConfigMap", AGENT_CONFIG_MAP), ("ConfigMap", MIXER_CONFIG_MAP)]
    (mixer,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "istio-mixer"]
    volumes = mixer["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": MIXER_CONFIG_MAP}} in volumes


@pytest.mark.parametrize("text", ["", "[]", "{}", json.dumps({"release": "x", "refreshPeriod": "soon",
                                                               "routeRendering": {}}),
                                  json.dumps({"release": "x", "refreshPeriod": 5,
                                              "routeRendering": {"retries": "envoy"}})])
def test_a_broken_agent_config_is_one_line_naming_the_fix(text: str) -> None:
    with pytest.raises(ManifestError, match=r"render it with|choose one of") as caught:
        AgentConfig.parse(text, f"ConfigMap {AGENT_CONFIG_MAP}")
    assert "\n" not in str(caught.value)
