"""Old manifests on new API servers: each rewrite yields what the successor API requires."""

from __future__ import annotations

import pytest

from pytest_nginmesh.cluster.convert import served_version_of
from pytest_nginmesh.errors import ClusterError
from pytest_nginmesh.kube import Obj

MODERN = {("apps/v1", "Deployment"), ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
          ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
          ("networking.k8s.io/v1", "Ingress"), ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("v1", "Service")}


def served(api_version: str, kind: str) -> bool:
    return (api_version, kind) in MODERN


def test_served_objects_are_left_alone() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    assert served_version_of(service, served) is service


def test_old_deployments_get_apps_v1_and_the_selector_they_defaulted_to() -> None:
    old = {"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "reviews-v1"},
           "spec": {"replicas": 1, "rollbackTo": {"revision": 1},
                    "template": {"metadata": {"labels": {"app": "reviews", "version": "v1"}}, "spec": {}}}}
    new = served_version_of(old, served)
    assert new["apiVersion"] == "apps/v1"
    assert new["spec"]["selector"] == {"matchLabels": {"app": "reviews", "version": "v1"}}
    assert "rollbackTo" not in new["spec"]
    assert old["apiVersion"] == "extensions/v1beta1" and "selector" not in old["spec"], "the input is not modified"


def test_an_explicit_selector_is_kept() -> None:
    old = {"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d", "extra": "x"}}}}}
    assert served_version_of(old, served)["spec"]["selector"] == {"matchLabels": {"app": "d"}}


def test_istio_era_crds_become_schemaless_v1_crds() -> None:
    old = {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "routerules.config.istio.io"},
           "spec": {"group": "config.istio.io", "version": "v1alpha2", "scope": "Namespaced",
                    "names": {"kind": "RouteRule", "plural": "routerules", "singular": "routerule"}}}
    new = served_version_of(old, served)
    assert new["apiVersion"] == "apiextensions.k8s.io/v1"
    assert "version" not in new["spec"]
    [version] = new["spec"]["versions"]
    assert version["name"] == "v1alpha2" and version["served"] and version["storage"]
    assert version["schema"]["openAPIV3Schema"]["x-kubernetes-preserve-unknown-fields"] is True


def test_webhooks_state_side_effects_and_review_versions() -> None:
    old = {"apiVersion": "admissionregistration.k8s.io/v1beta1", "kind": "MutatingWebhookConfiguration",
           "metadata": {"name": "istio-sidecar-injector"},
           "webhooks": [{"name": "sidecar-injector.istio.io", "clientConfig": {"caBundle": "X"}}]}
    [hook] = served_version_of(old, served)["webhooks"]
    assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1beta1"]


def test_ingress_backends_take_the_v1_shape() -> None:
    old: Obj = {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "gateway"},
                "spec": {"backend": {"serviceName": "productpage", "servicePort": 9080},
                         "rules": [{"http": {"paths": [{"path": "/productpage", "backend": {
                             "serviceName": "productpage", "servicePort": "http"}}]}}]}}
    new = served_version_of(old, served)
    assert new["spec"]["defaultBackend"] == {"service": {"name": "productpage", "port": {"number": 9080}}}
    [path] = new["spec"]["rules"][0]["http"]["paths"]
    assert path == {"path": "/productpage", "pathType": "ImplementationSpecific",
                    "backend": {"service": {"name": "productpage", "port": {"name": "http"}}}}


def test_rbac_only_changes_its_version() -> None:
    old = {"apiVersion": "rbac.authorization.k8s.io/v1beta1", "kind": "ClusterRole", "metadata": {"name": "r"},
           "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    assert served_version_of(old, served) == {**old, "apiVersion": "rbac.authorization.k8s.io/v1"}


def test_no_known_successor_is_an_error_naming_the_object() -> None:
    old = {"apiVersion": "extensions/v1beta1", "kind": "PodSecurityPolicy", "metadata": {"name": "p"}}
    with pytest.raises(ClusterError, match=r"podsecuritypolicy/.*p: the API server serves no PodSecurityPolicy in "
                                           r"extensions/v1beta1"):
        served_version_of(old, served)
