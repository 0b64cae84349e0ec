"""Admission of the local API server, and the bounds before it: manifest parsing, request bodies, the CLI's input.

The API server here is the daemon's own ApiServer on a temporary state directory, served on a unix socket by the
daemon's own handler; only its control loop (controllers, kubelet) does not run, so nothing needs root.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_nginmesh.errors import ManifestError
from pytest_nginmesh.kube import MAX_ALIAS_EXPANSION, MAX_MANIFEST_BYTES, parse_manifests

# The classic "billion laughs": 445 bytes of YAML whose aliases expand to 9**9 (387 million) strings.
ALIAS_BOMB = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: laughs-of-billions
data:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
  lols: *i
"""
DEEP_JSON = "[" * 100_000 + "]" * 100_000
MIB = 1024 * 1024


# -- parsing is bounded -------------------------------------------------------------------------------------------
def test_the_alias_bomb_is_refused_before_it_expands() -> None:
    assert len(ALIAS_BOMB.encode()) == 445
    started = time.monotonic()
    with pytest.raises(ManifestError, match=f"aliases expand to more than {MAX_ALIAS_EXPANSION} extra nodes"):
        parse_manifests(ALIAS_BOMB, "bomb.yaml")
    assert time.monotonic() - started < 1


def test_a_few_aliases_are_fine() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: &d {a: b}\nbinaryData: *d\n"
    (obj,) = parse_manifests(text)
    assert obj["binaryData"] == {"a": "b"}


def test_an_alias_inside_its_own_anchor_is_refused() -> None:
    with pytest.raises(ManifestError, match="refers to the node that holds it"):
        parse_manifests("apiVersion: v1\nkind: List\nitems: &a [*a]\n")


def test_merge_keys_cannot_bomb_either() -> None:
    levels = ["a0: &a0 {k: v}"] + [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: v}}" for i in range(1, 40)]
    with pytest.raises(ManifestError, match="alias bomb"):
        parse_manifests("\n".join(levels))


@pytest.mark.parametrize("text", [DEEP_JSON, '{"a":' * 100_000 + "1" + "}" * 100_000,
                                  "".join(" " * i + "a:\n" for i in range(2000))],
                         ids=["json-array", "json-object", "yaml-block"])
def test_deep_nesting_is_one_line_not_a_recursion_error(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(ManifestError, match="nests deeper than 100 levels") as refused:
        parse_manifests(text, "deep.json")
    assert len(str(refused.value).splitlines()) == 1
    assert time.monotonic() - started < 5


def test_aliases_cannot_nest_deeper_than_the_text() -> None:
    lines = ["l0: &l0 " + "[" * 60 + "]" * 60, "l1: &l1 " + "[" * 60 + "*l0" + "]" * 60]
    with pytest.raises(ManifestError, match="aliases nest deeper than 100 levels"):
        parse_manifests("\n".join(lines))


def test_a_manifest_is_at_most_3_mib() -> None:
    assert MAX_MANIFEST_BYTES == 3 * MIB
    with pytest.raises(ManifestError, match="holds more than 3145728 bytes"):
        parse_manifests("#" * (3 * MIB + 1), "big.yaml")


# -- the CLI: one line, exit 2, bounded memory, before any cluster is asked ----------------------------------------
# Started from a small process, not from this big one: Linux counts the RSS a child had before its exec.
MEASURED = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def run_cli(*args: str, stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], int]:
    """The CLI in a child process, and its peak RSS in KiB (RUSAGE_CHILDREN of the process that waited for it)."""
    result = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, "-m", "pytest_nginmesh.cli", "local",
                             *args], input=stdin, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTEST_NGINMESH_CLUSTER_NAME": "nmnocluster"})
    *output, peak = result.stdout.splitlines()
    result.stdout = "\n".join(output)
    return result, int(peak)


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fragment in result.stderr


@pytest.mark.parametrize(("text", "fragment"), [
    (ALIAS_BOMB, "alias bomb"), (DEEP_JSON, "nests deeper than 100 levels"),
    ("x" * (3 * MIB + 10), "holds more than 3145728 bytes"),
], ids=["alias-bomb", "deep-json", "too-big"])
def test_the_cli_refuses_in_one_line_fast_and_small(tmp_path: Path, text: str, fragment: str) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    started = time.monotonic()
    result, peak_kib = run_cli("apply", "-f", str(manifest))
    assert_one_line_exit_2(result, fragment)
    assert time.monotonic() - started < 30
    assert peak_kib < 150 * 1024, f"the CLI's peak RSS was {peak_kib} KiB"


@pytest.mark.parametrize("verb", ["apply", "delete"])
def test_a_manifest_without_objects_is_refused(verb: str) -> None:
    result, _ = run_cli(verb, "-f", "/dev/null")
    assert_one_line_exit_2(result, "/dev/null holds no Kubernetes object: give a YAML or JSON manifest")
    result, _ = run_cli(verb, "-f", "-", stdin="---\n# nothing\n")
    assert_one_line_exit_2(result, "standard input holds no Kubernetes object")


def test_an_endless_input_is_refused() -> None:
    result, _ = run_cli("apply", "-f", "/dev/zero")
    assert_one_line_exit_2(result, "/dev/zero holds more than 3145728 bytes")


@pytest.mark.parametrize("verb", [["status"], ["down"], ["get", "pods"], ["apply", "-f", "/dev/null"]])
def test_an_empty_cluster_name_is_refused_not_the_default(verb: list[str]) -> None:
    result, _ = run_cli(*verb, "--name", "")
    assert_one_line_exit_2(result, "bad cluster name ''")

