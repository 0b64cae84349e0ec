"""Where the Bookinfo under test runs: the one installed with the mesh (namespace ``default``, the ingress's rules
without a host), or a copy in a namespace of its own that the same ingress reaches by a host of its own.

Route rules name their destination relative to their own namespace (``reviews`` in a rule of namespace X is
``reviews.X.svc.cluster.local``: istio/pilot model/config.go, ResolveFQDN in 0.2), so rules applied for a copy
never touch another copy's traffic: under pytest-xdist every worker after the first tests a copy of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import requests

from ..bookinfo import REVIEWS_VERSIONS, reviews_version
from ..cluster.base import Cluster, wait_for
from ..kube import Obj, in_namespace
from ..profiles import Profile
from ..settings import Settings, Timeouts
from .manifests import BOOKINFO_DEPLOYMENTS, BOOKINFO_NAMESPACE, load_fixture
from .namespaces import create_namespace, delete_namespace
from .nginx_routes import service_fqdn

# RFC 2606 reserves .test: a copy's host never names a real one.
COPY_HOST_DOMAIN = "nginmesh.test"


@dataclass(frozen=True)
class BookinfoInstance:
    """One running Bookinfo: its namespace, and how its pages are reached through the mesh ingress."""

    namespace: str
    ingress_url: str
    host: str = ""

    @property
    def headers(self) -> dict[str, str]:
        """What requests through the ingress send: the copy's host, if any."""
        return {"Host": self.host} if self.host else {}

    @classmethod
    def installed(cls, cluster: Cluster) -> BookinfoInstance:
        """The Bookinfo installed with the mesh."""
        return cls(BOOKINFO_NAMESPACE, cluster.ingress_url())

    def url(self, path: str) -> str:
        """A page through the ingress; send ``headers`` with it."""
        return self.ingress_url + path

    def fqdn(self, service: str) -> str:
        return service_fqdn(service, self.namespace)

    def service_url(self, service: str, path: str, port: int = 9080) -> str:
        """A Bookinfo service's URL as a pod in any namespace calls it."""
        return f"http://{service}.{self.namespace}:{port}{path}"


def copy_objects(objects: list[Obj], namespace: str, host: str) -> list[Obj]:
    """Bookinfo's manifests for ``namespace``, each Ingress rule for ``host`` only."""
    placed = in_namespace(objects, namespace)
    for obj in placed:
        if obj.get("kind") == "Ingress":
            for rule in obj["spec"].get("rules") or []:
                rule["host"] = host
    return placed


@contextmanager
def bookinfo_copy(cluster: Cluster, profile: Profile, settings: Settings, owner: str,
                  guard: Callable[[], AbstractContextManager[object]] = nullcontext) -> Iterator[BookinfoInstance]:
    """The profile's Bookinfo (its release's bookinfo.yaml) in a namespace of its own, serving every reviews
    version through the ingress; removed afterwards with its namespace, however its setup ends. Making and
    removing it change the mesh, so each runs inside ``guard()`` (the mesh-state lock, under xdist)."""
    timeouts = settings.timeouts
    with guard():
        namespace = create_namespace(cluster, settings, owner)
    try:
        instance = BookinfoInstance(namespace, cluster.ingress_url(), f"{namespace}.{COPY_HOST_DOMAIN}")
        with guard():
            cluster.apply(copy_objects(load_fixture(profile.bookinfo.fixture), namespace, instance.host))
            cluster.wait_pods_ready(namespace, timeouts.pod_ready, minimum=len(BOOKINFO_DEPLOYMENTS))
            cluster.wait_converged(timeouts.pod_ready)
            wait_for_productpage(instance, timeouts)
        yield instance
    finally:
        with guard():
            delete_namespace(cluster, settings, namespace)


def wait_for_productpage(bookinfo: BookinfoInstance, timeouts: Timeouts) -> None:
    """Wait until /productpage answers 200 through the ingress and every reviews version has rendered it.

    Bookinfo declares no readiness probes (istio/istio samples/bookinfo/kube/bookinfo.yaml, 0.2.12 to 0.7.1),
    so a Ready pod may not listen yet, and NGINX passes a refused request on to the next endpoint: until
    every version has answered, traffic is not yet split the way the suites judge it."""
    url = bookinfo.url("/productpage")
    seen: set[str] = set()

    def probe() -> tuple[bool | None, str]:
        try:
            response = requests.get(url, headers=bookinfo.headers, timeout=timeouts.http_request)
        except requests.RequestException as e:
            return None, str(e)
        if response.status_code != 200 or "Simple Bookstore App" not in response.text:
            return None, f"HTTP {response.status_code} {response.text[:80]!r}"
        seen.add(reviews_version(response.text))
        if seen >= set(REVIEWS_VERSIONS):
            return True, ""
        return None, f"reviews versions seen so far: {sorted(seen)}"

    where = f" (Host {bookinfo.host})" if bookinfo.host else ""
    wait_for(f"GET {url}{where} to answer 200 from every reviews version", probe, timeouts.pod_ready)
