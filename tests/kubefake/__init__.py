"""kubefake: a FAKE Kubernetes API server (1.13 shapes) for testing Kubernetes clients without a cluster.

It is not a Kubernetes implementation. It answers at the HTTP boundary with recorded discovery documents
(tests/data/k8s-api/) and a generic object store, so that the official ``kubernetes`` client, typed and
dynamic, can be pointed at it through an ordinary kubeconfig::

    with RecordedApiServer() as server:
        server.load(bookinfo_objects())
        server.on_exec("default", "reviews-v3-5fff595d9b-zsb2q", "istio-proxy", lambda argv: (0, b"ok\\n", b""))
        server.on_port_forward("istio-system", "istio-ingress-6krxnbt9rw-dpnbh", 80, ("127.0.0.1", 8080))
        config = server.write_kubeconfig(tmp_path / "kubeconfig")

What it does not do (known differences from a real 1.13 API server) is listed in README.md beside this file.
"""

from .portforward import Target as PortForwardTarget
from .recorded import bookinfo_objects
from .server import DEFAULT_TOKEN, ExecHandler, ProxyHandler, ProxyRequest, RecordedApiServer, RecordedRequest

__all__ = ["DEFAULT_TOKEN", "ExecHandler", "PortForwardTarget", "ProxyHandler", "ProxyRequest", "RecordedApiServer",
           "RecordedRequest", "bookinfo_objects"]
