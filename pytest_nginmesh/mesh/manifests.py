"""The manifests the suites deploy: readable YAML in the repository's ``fixtures/`` folder, shipped in the
package as ``pytest_nginmesh.fixtures`` and always read as package data (so they work from a wheel)."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import yaml
from cryptography import x509

from ..cluster.local.rest.pki import issue
from ..errors import ManifestError
from ..kube import Obj, parse_manifests
from ..profiles import DEFAULT_PROFILE, ISTIO_RENDERING, SIDECAR_REDIRECT, Profile, RouteRendering
from .injection import INJECT_CONFIG_MAP

FIXTURES: Traversable = files("pytest_nginmesh.fixtures")
CONTROL_PLANE = "istio/istio-0.2.12.yaml"
CONTROL_PLANE_PODS = 4  # pilot, mixer, ingress, initializer
# What the local programs read to behave as the profile's release: the agent (sidecars and the ingress) reads
# AGENT_CONFIG_MAP from Pilot; the mixer reads its Prometheus handler from MIXER_CONFIG_MAP, mounted at
# its --configStoreURL as Istio's Mixer reads its config store.
AGENT_CONFIG_MAP = "nginmesh-agent"
AGENT_CONFIG_KEY = "config.json"
AGENT_CONFIG_PATH = "/v1/agent-config"  # where the local Pilot serves it to the agents
MIXER_CONFIG_MAP = "istio-mixer-config"
MIXER_CONFIG_KEY = "prometheus.json"
BOOKINFO = "bookinfo/bookinfo.yaml"
BOOKINFO_NAMESPACE = "default"
CONTROL_PLANE_NAMESPACE = "istio-system"
BOOKINFO_SERVICES = ("productpage", "details", "reviews", "ratings")
BOOKINFO_DEPLOYMENTS = ("productpage-v1", "details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3")


def fixture_text(relative: str) -> str:
    """A fixture file's text; ``relative`` is a path below ``fixtures/`` such as ``routes/route-rule-all-v1.yaml``."""
    try:
        return FIXTURES.joinpath(*relative.split("/")).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ManifestError(f"fixtures/{relative}: no such fixture; give a path below fixtures/ "
                            "such as routes/route-rule-all-v1.yaml, or an absolute path") from e


def load_fixture(relative: str) -> list[Obj]:
    return parse_manifests(fixture_text(relative), f"fixtures/{relative}")


def control_plane(profile: Profile) -> list[Obj]:
    """The control plane fixture as the profile's release installs it (``release_control_plane``), with the
    ConfigMaps rendered from the profile, so its agents and mixer are the release's twin; they come right after
    the namespace, before any pod that reads them."""
    objects = release_control_plane(load_fixture(CONTROL_PLANE), profile)
    rendered = [agent_config_map(profile), mixer_config_map(profile)]
    first_pod_owner = next(i for i, o in enumerate(objects) if o.get("kind") != "Namespace")
    return objects[:first_pod_owner] + rendered + objects[first_pod_owner:]


def release_control_plane(objects: list[Obj], profile: Profile) -> list[Obj]:
    """The fixture's control plane with the release's Pilot port (in its Service, its Deployment, the mesh
    ConfigMap's discoveryAddress and the ingress's flags), its injector (the Initializer, or for a webhook
    release the webhook, ``webhook_injector``: each injects as its image's tag says) and images, and without
    --controlPlaneAuthPolicy where the release's proxies have none."""
    args, port = profile.proxy_args, profile.pilot_port
    rendered = copy.deepcopy(objects)
    if profile.injection == "webhook":
        rendered = [o for o in rendered if (o["kind"], o["metadata"]["name"]) not in INITIALIZER_OBJECTS]
        rendered += webhook_injector(profile)
    for obj in rendered:
        name, kind = obj["metadata"]["name"], obj["kind"]
        if (kind, name) == ("ConfigMap", INJECT_CONFIG_MAP):
            config = yaml.safe_load(obj["data"]["config"])
            config["params"].update(initImage=profile.init_image, proxyImage=profile.proxy_image,
                                    version=profile.nginmesh_version)
            obj["data"]["config"] = yaml.safe_dump(config, sort_keys=False)
        elif (kind, name) == ("ConfigMap", "istio"):
            mesh = yaml.safe_load(obj["data"]["mesh"])
            mesh["defaultConfig"]["discoveryAddress"] = args.discovery_address
            if not args.control_plane_auth_policy:
                mesh["defaultConfig"].pop("controlPlaneAuthPolicy", None)
            obj["data"]["mesh"] = yaml.safe_dump(mesh, sort_keys=False)
        elif (kind, name) == ("Service", "istio-pilot"):
            obj["spec"]["ports"][0]["port"] = port
        elif kind == "Deployment" and name in ("istio-pilot", "istio-ingress", "istio-initializer"):
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            if name == "istio-pilot":
                container["args"][container["args"].index("--port") + 1] = str(port)
                container["ports"][0]["containerPort"] = port
            elif name == "istio-ingress":
                flags = container["args"]
                flags[flags.index("--discoveryAddress") + 1] = f"istio-pilot:{port}"
                if not args.control_plane_auth_policy:
                    at = flags.index("--controlPlaneAuthPolicy")
                    del flags[at:at + 2]
            else:
                container["image"] = container["image"].rsplit(":", 1)[0] + ":" + profile.injector_release
    return rendered


@dataclass(frozen=True)
class AgentConfig:
    """What the local agent reads to behave as one release's agent does."""

    release: str
    refresh_period: float  # seconds between polls of Pilot
    route_rendering: RouteRendering
    ingress_redirect: int = SIDECAR_REDIRECT  # the release's ingress is Envoy (301); sidecars always say 302
    # Pilot answers a poll at once when the mesh changes (else after refresh_period), the agent acks the version
    # it runs and Pilot publishes the acks (Profile.versioned_push); a release's agent polls and acks nothing.
    versioned_push: bool = True

    def redirect_status(self, mode: str) -> int:
        return self.ingress_redirect if mode == "ingress" else SIDECAR_REDIRECT

    @classmethod
    def reference(cls, refresh_period: float) -> AgentConfig:
        return cls(DEFAULT_PROFILE, refresh_period, ISTIO_RENDERING)

    @classmethod
    def parse(cls, text: str, where: str) -> AgentConfig:
        try:
            config = json.loads(text)
            refresh = float(config["refreshPeriod"])
            return cls(str(config["release"]), refresh, RouteRendering.from_config(config["routeRendering"]),
                       int(config["ingressRedirect"]), bool(config.get("versionedPush", True)))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ManifestError(f"{where}: not an agent config ({e!r}); render it with "
                                "pytest_nginmesh.mesh.manifests.agent_config_map") from e


INITIALIZER_OBJECTS = {("Deployment", "istio-initializer"), ("InitializerConfiguration", "istio-sidecar")}
WEBHOOK_NAME = "sidecar-injector.istio.io"
WEBHOOK_SERVICE = "istio-sidecar-injector"
WEBHOOK_CERTS = "sidecar-injector-certs"


def webhook_injector(profile: Profile) -> list[Obj]:
    """Istio 0.7's sidecar injection webhook as Nginmesh v0.7.1 installs it (nginxinc/nginmesh
    istio/release/install/kubernetes/istio/istio-sidecar-injector.yaml; install-sidecar.sh signs its certificate
    for istio-sidecar-injector.istio-system.svc through webhook-create-signed-cert.sh and puts the CA in the
    caBundle): its Service, serving Secret, Deployment and MutatingWebhookConfiguration (last: pods are sent to
    it only from then on), and the Bookinfo namespace labelled for injection, as its README says to. The
    Deployment runs without the release's exec probes (they run the injector binary)."""
    host = f"{WEBHOOK_SERVICE}.{CONTROL_PLANE_NAMESPACE}.svc"
    ca_pem, cert_pem, key_pem = issue("nginmesh-webhook-ca", host, [x509.DNSName(host)])
    meta = {"namespace": CONTROL_PLANE_NAMESPACE, "labels": {"istio": "sidecar-injector"}}
    if profile.injection_policy.namespace_label is None:
        raise ManifestError(f"profile {profile.name} names no namespace label for its webhook to select")
    selected = dict([profile.injection_policy.namespace_label])
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": BOOKINFO_NAMESPACE, "labels": selected}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": WEBHOOK_CERTS, "namespace": CONTROL_PLANE_NAMESPACE},
         "type": "Opaque", "data": {"cert.pem": base64.b64encode(cert_pem).decode(),
                                    "key.pem": base64.b64encode(key_pem).decode()}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": WEBHOOK_SERVICE, **meta},
         "spec": {"ports": [{"name": "https-webhook", "port": 443}], "selector": {"istio": "sidecar-injector"}}},
        {"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": WEBHOOK_SERVICE, **meta},
         "spec": {"replicas": 1, "template": {"metadata": {"labels": {"istio": "sidecar-injector"}}, "spec": {
             "containers": [{
                 "name": "webhook", "image": f"docker.io/istio/sidecar_injector:{profile.injector_release}",
                 "imagePullPolicy": "IfNotPresent",
                 "args": ["--tlsCertFile=/etc/istio/certs/cert.pem", "--tlsKeyFile=/etc/istio/certs/key.pem",
                          "--injectConfig=/etc/istio/inject/config", "--meshConfig=/etc/istio/config/mesh",
                          "--healthCheckInterval=2s", "--healthCheckFile=/health"],
                 "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/istio/config", "readOnly": True},
                                  {"name": "certs", "mountPath": "/etc/istio/certs", "readOnly": True},
                                  {"name": "inject-config", "mountPath": "/etc/istio/inject", "readOnly": True}]}],
             "volumes": [{"name": "config-volume", "configMap": {"name": "istio"}},
                         {"name": "certs", "secret": {"secretName": WEBHOOK_CERTS}},
                         {"name": "inject-config", "configMap": {"name": INJECT_CONFIG_MAP,
                                                                 "items": [{"key": "config", "path": "config"}]}}]}}}},
        {"apiVersion": "admissionregistration.k8s.io/v1beta1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": WEBHOOK_SERVICE},
         "webhooks": [{"name": WEBHOOK_NAME,
                       "clientConfig": {"service": {"name": WEBHOOK_SERVICE, "namespace": CONTROL_PLANE_NAMESPACE,
                                                    "path": "/inject"},
                                        "caBundle": base64.b64encode(ca_pem).decode()},
                       "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                  "resources": ["pods"]}],
                       "failurePolicy": "Fail",
                       "namespaceSelector": {"matchLabels": selected}}]},
    ]


def agent_config_map(profile: Profile) -> Obj:
    config = {"release": profile.name, "refreshPeriod": profile.agent_refresh_period,
              "routeRendering": profile.route_rendering.to_config(), "ingressRedirect": profile.redirect_status,
              "versionedPush": profile.versioned_push}
    return _config_map(AGENT_CONFIG_MAP, AGENT_CONFIG_KEY, config)


def mixer_config_map(profile: Profile) -> Obj:
    names = profile.metrics
    config = {"metrics": {"requestCount": names.request_count, "requestDuration": names.request_duration,
                          "requestSize": names.request_size, "responseSize": names.response_size},
              "durationBuckets": list(names.duration_buckets), "sizeBuckets": list(names.size_buckets)}
    return _config_map(MIXER_CONFIG_MAP, MIXER_CONFIG_KEY, config)


def _config_map(name: str, key: str, config: Mapping[str, object]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": CONTROL_PLANE_NAMESPACE},
            "data": {key: json.dumps(config, indent=2, sort_keys=True)}}
