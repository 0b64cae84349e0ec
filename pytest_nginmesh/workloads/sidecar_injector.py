"""The ``sidecar_injector`` image: Istio 0.7's sidecar injection webhook (istio/istio pilot/pkg/kube/inject/
webhook.go at 0.7.1): an HTTPS server the API server calls with an AdmissionReview for each pod created in a
namespace its MutatingWebhookConfiguration selects; it answers with a JSONPatch adding the sidecar, the init
container, their volumes and the status annotation, unless the pod opts out (its own annotation) or its namespace
is one the webhook ignores (kube-system, kube-public). The proxy's command line is the one of the Istio release
its image's tag names (profiles.INJECTOR_ARGS).

The injector reads the ``istio-inject`` config at ``--injectConfig`` in the parameter form the Initializer reads
(policy and params: images, verbosity, ...), not the release's Go template, and the mesh config at
``--meshConfig``."""

from __future__ import annotations

import argparse
import base64
import copy
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from ..errors import ManifestError
from ..injection_policy import STATUS_ANNOTATION, InjectionPolicy, ProxyArgs
from ..kube import Obj, annotations_of
from ..mesh.injection import InjectConfig, MeshConfig, inject
from ..profiles import WEBHOOK_POLICY, injector_args
from ._common import HttpServer, send_json, serve_until_stopped, stop_event

INJECT_PATH = "/inject"
MAX_REVIEW_BYTES = 3 * 1024 * 1024  # the API server's own request limit


def patch_for(pod: Obj, namespace: str, config: InjectConfig, mesh: MeshConfig, args: ProxyArgs,
              policy: InjectionPolicy = WEBHOOK_POLICY) -> list[Obj]:
    """The JSONPatch that injects ``pod`` (created in ``namespace``), empty when it is not to be injected."""
    spec = pod.get("spec") or {}
    if STATUS_ANNOTATION in annotations_of(pod) or not policy.injects(
            namespace, policy.requested(pod, pod), enabled=config.policy == "enabled",
            host_network=bool(spec.get("hostNetwork"))):
        return []
    # The injector's mutation works on a pod template: the pod is its own.
    as_template = {"kind": "Pod", "metadata": {}, "spec": {"template": {
        "metadata": copy.deepcopy(pod.get("metadata") or {}), "spec": copy.deepcopy(spec)}}}
    injected = inject(as_template, config, mesh, args)["spec"]["template"]
    return [{"op": "add", "path": f"/spec/{field}", "value": injected["spec"][field]}
            for field in ("initContainers", "containers", "volumes")] + [
        {"op": "add", "path": "/metadata/annotations", "value": injected["metadata"]["annotations"]}]


class Injector:
    """The webhook's configuration, read from its files at each review, as they may be remounted."""

    def __init__(self, inject_config: Path, mesh_config: Path, args: ProxyArgs) -> None:
        self.inject_config, self.mesh_config, self.args = inject_config, mesh_config, args

    def review(self, review: Obj) -> Obj:
        """The AdmissionReview answer to one review."""
        request = review.get("request")
        if not isinstance(request, dict) or not isinstance(request.get("object"), dict):
            raise ValueError("an AdmissionReview with a request and its object is expected")
        pod = request["object"]
        namespace = str(request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or "default")
        config = InjectConfig.from_configmap({"data": {"config": self.inject_config.read_text()}})
        mesh = MeshConfig.from_configmap({"data": {"mesh": self.mesh_config.read_text()}}, self.args)
        patch = patch_for(pod, namespace, config, mesh, self.args)
        response: Obj = {"uid": request.get("uid", ""), "allowed": True}
        if patch:
            response |= {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(patch).encode()).decode()}
            name = (pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get("generateName")
            print(f"sidecar-injector: injected pod {namespace}/{name}", flush=True)
        return {"apiVersion": review.get("apiVersion", "admission.k8s.io/v1beta1"), "kind": "AdmissionReview",
                "response": response}


def webhook_handler(injector: Injector) -> type[BaseHTTPRequestHandler]:
    class Webhook(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != INJECT_PATH:
                send_json(self, 404, {"message": f"no such path {self.path}; the webhook serves {INJECT_PATH}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= MAX_REVIEW_BYTES:
                    raise ValueError(f"an AdmissionReview of 1 to {MAX_REVIEW_BYTES} bytes is expected")
                answer = injector.review(json.loads(self.rfile.read(length)))
            except (ValueError, TypeError, ManifestError, OSError) as e:
                send_json(self, 400, {"message": f"bad AdmissionReview: {e}"})
            else:
                send_json(self, 200, answer)

    return Webhook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sidecar-injector")
    parser.add_argument("--tlsCertFile", default="/etc/istio/certs/cert.pem")
    parser.add_argument("--tlsKeyFile", default="/etc/istio/certs/key.pem")
    parser.add_argument("--injectConfig", default="/etc/istio/inject/config")
    parser.add_argument("--meshConfig", default="/etc/istio/config/mesh")
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--image-tag", default="0.7.1", help="the Istio release this injector is")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    stop = stop_event()
    injector = Injector(Path(args.injectConfig), Path(args.meshConfig), injector_args(args.image_tag))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(args.tlsCertFile, args.tlsKeyFile)
    except (OSError, ssl.SSLError) as e:
        print(f"sidecar-injector: cannot load the serving certificate: {e}", flush=True)
        return 1
    server = HttpServer(("0.0.0.0", args.port), webhook_handler(injector))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return serve_until_stopped(server, stop, f"sidecar-injector: serving {INJECT_PATH} on :{args.port}, "
                                             f"injecting as Istio {args.image_tag}")


if __name__ == "__main__":
    sys.exit(main())
