"""Loading manifests and object identity (pytest_nginmesh.kube)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from pytest_nginmesh.errors import ManifestError
from pytest_nginmesh.kube import ObjectKey, in_namespace, key_of, parse_manifests, read_manifest_file

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  ports:
  - port: 9080
"""
DEPLOYMENT = """\
apiVersion: extensions/v1beta1
kind: Deployment
metadata:
  name: reviews-v1
  namespace: bookinfo
"""


def names(objects: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objects]  # type: ignore[index]


# -- parsing ---------------------------------------------------------------------------------------


def test_multi_document_yaml_keeps_order() -> None:
    objects = parse_manifests(f"{SERVICE}---\n{DEPLOYMENT}")
    assert names(objects) == [("Service", "reviews"), ("Deployment", "reviews-v1")]
    assert objects[0]["spec"]["ports"] == [{"port": 9080}]


def test_json_object() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio"}, "data": {}})
    assert names(parse_manifests(text)) == [("ConfigMap", "istio")]


def test_v1_list_is_flattened() -> None:
    items = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": n}} for n in ("a", "b")]
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    assert names(parse_manifests(text)) == [("Service", "a"), ("Service", "b")]


def test_typed_list_and_nested_list_are_flattened() -> None:
    inner = {"apiVersion": "v1", "kind": "List",
             "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p2"}}]}
    outer = {"apiVersion": "v1", "kind": "PodList",
             "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1"}}, inner]}
    assert names(parse_manifests(json.dumps(outer))) == [("Pod", "p1"), ("Pod", "p2")]


def test_empty_documents_are_skipped() -> None:
    text = f"---\n# only a comment\n---\n{SERVICE}---\n---\n"
    assert names(parse_manifests(text)) == [("Service", "reviews")]


@pytest.mark.parametrize("text", ["", "\n", "---\n---\n", "# nothing here\n"])
def test_text_without_objects_gives_an_empty_list(text: str) -> None:
    assert parse_manifests(text) == []


# -- errors ----------------------------------------------------------------------------------------


def test_bad_yaml_names_the_source_and_the_line() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\n  labels: {app: x\nspec: {}\n"
    with pytest.raises(ManifestError, match=r"^bookinfo\.yaml: line 6 is not valid YAML or JSON \(.+\); fix"):
        parse_manifests(text, "bookinfo.yaml")


def test_bad_yaml_line_counts_across_documents() -> None:
    text = f"{SERVICE}---\napiVersion: v1\nkind: Service\n\tbad: tab\n"
    with pytest.raises(ManifestError, match=r"^f\.yaml: line 11 "):
        parse_manifests(text, "f.yaml")


@pytest.mark.parametrize(("text", "type_name"), [("just a string\n", "str"), ("42\n", "int"), ("- a\n- b\n", "list")])
def test_non_mapping_document_is_rejected(text: str, type_name: str) -> None:
    with pytest.raises(ManifestError, match=f"document 1 is a {type_name}, not a Kubernetes object"):
        parse_manifests(text)


def test_error_names_the_document_index() -> None:
    with pytest.raises(ManifestError, match="document 2 is a str"):
        parse_manifests(f"{SERVICE}---\nhello\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Service\nmetadata: {name: a}\n", "has no apiVersion"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "has no kind"),
        ("apiVersion: v1\nkind: Service\n", r"\(Service\) has no metadata.name"),
        ("apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n", r"\(Service\) has no metadata.name"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: ''}\n", r"\(Service\) has no metadata.name"),
        ("apiVersion: 1\nkind: Service\nmetadata: {name: a}\n", "has no apiVersion"),
    ],
)
def test_missing_identity_is_rejected(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifests(text)


def test_error_inside_a_list_names_the_item() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "List",
                       "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ok"}}, {"kind": "Pod"}]})
    with pytest.raises(ManifestError, match="document 1 item 2 has no apiVersion"):
        parse_manifests(text)


def test_list_items_must_be_a_list() -> None:
    with pytest.raises(ManifestError, match="'items' of a List must be a list"):
        parse_manifests('{"apiVersion": "v1", "kind": "List", "items": "nope"}')


def test_metadata_that_is_not_a_mapping_is_rejected() -> None:
    with pytest.raises(ManifestError):
        parse_manifests("apiVersion: v1\nkind: Service\nmetadata: reviews\n")


# -- identity --------------------------------------------------------------------------------------


def test_key_of_namespaced_object_defaults_the_namespace() -> None:
    (service,) = parse_manifests(SERVICE)
    assert key_of(service) == ObjectKey("Service", "default", "reviews")
    assert key_of(service, default_namespace="bookinfo") == ObjectKey("Service", "bookinfo", "reviews")
    assert str(key_of(service)) == "service/default/reviews"


def test_key_of_keeps_an_explicit_namespace() -> None:
    (deployment,) = parse_manifests(DEPLOYMENT)
    assert key_of(deployment, default_namespace="other") == ObjectKey("Deployment", "bookinfo", "reviews-v1")


@pytest.mark.parametrize("kind", ["Namespace", "InitializerConfiguration", "ClusterRole"])
def test_key_of_cluster_scoped_object_has_no_namespace(kind: str) -> None:
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "istio-system", "namespace": "ignored"}}
    assert key_of(obj) == ObjectKey(kind, "", "istio-system")
    assert str(key_of(obj)) == f"{kind.lower()}/istio-system"


# -- files -----------------------------------------------------------------------------------------


def test_read_manifest_file_reads_and_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(SERVICE)
    assert names(read_manifest_file(str(good))) == [("Service", "reviews")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- not an object\n")
    with pytest.raises(ManifestError, match="^" + re.escape(f"{bad} document 1 is a list")):
        read_manifest_file(str(bad))


def test_read_manifest_file_on_a_missing_path_says_no_such_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ManifestError, match="^" + re.escape(f"{missing}: no such file")):
        read_manifest_file(str(missing))


def test_read_manifest_file_on_a_directory_says_it_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot be read"):
        read_manifest_file(str(tmp_path))


def test_read_manifest_file_dash_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(DEPLOYMENT))
    assert names(read_manifest_file("-")) == [("Deployment", "reviews-v1")]


# -- placing in a namespace --------------------------------------------------------------------------


def test_in_namespace_places_what_names_no_namespace_and_leaves_the_rest() -> None:
    objects = parse_manifests(SERVICE + "---\n" + DEPLOYMENT + "---\napiVersion: v1\nkind: Namespace\n"
                              "metadata: {name: elsewhere}\n")
    placed = in_namespace(objects, "copy")
    assert [key_of(o) for o in placed] == [ObjectKey("Service", "copy", "reviews"),
                                           ObjectKey("Deployment", "bookinfo", "reviews-v1"),
                                           ObjectKey("Namespace", "", "elsewhere")]
    assert "namespace" not in placed[2]["metadata"], "a cluster-scoped object gets no namespace"
    assert "namespace" not in objects[0]["metadata"], "the originals stay as they were"
