"""Kubernetes' own rules for names, keys and sizes, with Kubernetes' own messages: the first wall of admission.

The rules and messages are those of kubernetes/kubernetes (master, 2025):
``staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go`` (DNS-1123 and DNS-1035 names, port names,
environment variable names, ConfigMap keys, MaxLenError, RegexError), ``…/pkg/api/validate/content/kube.go``
(label keys and values), ``…/pkg/api/validation/objectmeta.go`` (metadata, the 256 KiB annotation limit),
``…/pkg/api/validation/path/name.go`` (path segment names), ``…/pkg/util/validation/field/errors.go`` (how one
field error reads), ``…/pkg/api/errors/errors.go`` NewInvalid (``Kind "name" is invalid: …``) and
``pkg/apis/core/validation/validation.go`` (which rule each name follows; ConfigMap and Secret keys and their
1 MiB total, ``core.MaxSecretSize``; volume and container names, mounts, ports, env).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from .errors import ManifestError

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
DNS1035_LABEL_MAX_LENGTH = 63
LABEL_KEY_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
PORT_NAME_MAX_LENGTH = 15
TOTAL_ANNOTATION_SIZE_LIMIT_BYTES = 256 * 1024
MAX_SECRET_SIZE_BYTES = 1024 * 1024  # core.MaxSecretSize, also the limit of a ConfigMap's data

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                      "and must start and end with an alphanumeric character")
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                          "'-' or '.', and must start and end with an alphanumeric character")
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                      "alphabetic character, and end with an alphanumeric character")
_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                  "alphanumeric character")
_LABEL_VALUE_FMT = "(" + _LABEL_KEY_FMT + ")?"
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character")
_CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_MAP_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
_RELAXED_ENV_VAR_NAME_MSG = ("a valid environment variable name must consist only of printable ASCII characters "
                             "other than '='")


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def regex_error(message: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def _matches(fmt: str, value: str) -> bool:
    # Go's "^…$" matches the whole text; Python's "$" would also accept a trailing newline.
    return re.fullmatch(fmt, value) is not None


def _size(value: str) -> int:
    """Length as Go's len() counts it: bytes of UTF-8."""
    return len(value.encode("utf-8", "surrogatepass"))


def is_dns1123_label(value: str) -> list[str]:
    errors = []
    if _size(value) > DNS1123_LABEL_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _matches(_DNS1123_LABEL_FMT, value):
        if _matches(_DNS1123_SUBDOMAIN_FMT, value):
            errors.append("must not contain dots")
        else:
            errors.append(regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errors


def is_dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if _size(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _matches(_DNS1123_SUBDOMAIN_FMT, value):
        errors.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def is_dns1035_label(value: str) -> list[str]:
    errors = []
    if _size(value) > DNS1035_LABEL_MAX_LENGTH:
        errors.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if not _matches(_DNS1035_LABEL_FMT, value):
        errors.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errors


def is_path_segment_name(value: str) -> list[str]:
    """Names that only need to be one segment of a URL path (RBAC roles and bindings: "system:…")."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in value]


def is_qualified_name(value: str) -> list[str]:
    """A label key (also an annotation key, lower-cased): an optional DNS subdomain prefix and '/', then a name."""
    errors = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    else:
        return ["a valid label key " + regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errors.append("name part must be non-empty")
    elif _size(name) > LABEL_KEY_NAME_MAX_LENGTH:
        errors.append("name part " + max_len_error(LABEL_KEY_NAME_MAX_LENGTH))
    if not _matches(_LABEL_KEY_FMT, name):
        errors.append("name part " + regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errors


def is_label_value(value: str) -> list[str]:
    errors = []
    if _size(value) > LABEL_VALUE_MAX_LENGTH:
        errors.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _matches(_LABEL_VALUE_FMT, value):
        errors.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def is_port_name(value: str) -> list[str]:
    """IANA_SVC_NAME: at most 15 of [-a-z0-9], at least one letter, no leading, trailing or double hyphen."""
    errors = []
    if _size(value) > PORT_NAME_MAX_LENGTH:
        errors.append(max_len_error(PORT_NAME_MAX_LENGTH))
    if not _matches("[-a-z0-9]+", value):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if re.search("[a-z]", value) is None:
        errors.append("must contain at least one letter (a-z)")
    if "--" in value:
        errors.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def is_env_var_name(value: str) -> list[str]:
    """Printable ASCII but '=': the RelaxedEnvironmentVariableValidation rule, on by default since Kubernetes 1.32."""
    errors = []
    if not value:
        errors.append("environment variable name must be non-empty")
    if any(not (" " <= c <= "~") or c == "=" for c in value):
        errors.append(_RELAXED_ENV_VAR_NAME_MSG)
    return errors


def is_config_map_key(value: str) -> list[str]:
    """A key of a ConfigMap or Secret: the name of a file in a volume, so never '.', '..' or '..something'."""
    errors = []
    if _size(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errors.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _matches(_CONFIG_MAP_KEY_FMT, value):
        errors.append(regex_error(_CONFIG_MAP_KEY_MSG, _CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value in (".", ".."):
        errors.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errors.append("must not start with '..'")
    return errors


def go_quote(value: str) -> str:
    """A string as Go's %q prints it: quoted, with every non-printable character escaped (so it stays one line)."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif char in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                        "\v": "\\v"}[char])
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


class FieldError(NamedTuple):
    """One field's error, reading as Kubernetes' field.Error does: ``spec.containers[0].name: Invalid value: …``."""

    field: str
    type: str  # "Invalid value", "Required value", "Duplicate value", "Not found", "Too long", "Forbidden"
    value: object = None
    detail: str = ""

    def __str__(self) -> str:
        if self.type in ("Required value", "Forbidden", "Too long"):
            body = self.type
        elif isinstance(self.value, str):
            body = f"{self.type}: {go_quote(self.value)}"
        elif isinstance(self.value, bool):
            body = f"{self.type}: {str(self.value).lower()}"
        elif isinstance(self.value, int | float):
            body = f"{self.type}: {self.value}"
        else:  # a mapping, list or null where another type belongs: named by its JSON type, never dumped
            body = f"{self.type}: {_JSON_TYPES.get(type(self.value), 'value')}"
        return f"{self.field}: {body}: {self.detail}" if self.detail else f"{self.field}: {body}"


def invalid(field: str, value: object, detail: str) -> FieldError:
    return FieldError(field, "Invalid value", value, detail)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(field, "Required value", None, detail)


def too_long(field: str, limit: int) -> FieldError:
    return FieldError(field, "Too long", None, f"must have at most {limit} bytes")


_JSON_TYPES: dict[type, str] = {dict: "object", list: "array", type(None): "null"}

NameRule = Callable[[str], list[str]]

# pkg/apis/core/validation: ValidateNamespaceName is NameIsDNSLabel, ValidateServiceName NameIsDNS1035Label;
# pkg/apis/rbac/validation: ValidateRBACName is path.IsValidPathSegmentName; every other kind here (Pods,
# workloads, ConfigMaps, Secrets, custom resources such as Istio's RouteRule) is NameIsDNSSubdomain.
NAME_RULES: dict[str, NameRule] = {
    "Namespace": is_dns1123_label,
    "Service": is_dns1035_label,
    "Role": is_path_segment_name,
    "ClusterRole": is_path_segment_name,
    "RoleBinding": is_path_segment_name,
    "ClusterRoleBinding": is_path_segment_name,
}
POD_TEMPLATE_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job",
                                "ReplicationController"})
MAX_NESTING_DEPTH = 100
# More values than a 3 MiB request body can spell out: only shared (YAML-aliased) parts, counted once per
# place they appear, get there.
MAX_VALUES = 2_000_000


class Invalid(ManifestError):
    """Objects Kubernetes would refuse: kube-apiserver's message, and the field errors of each refused object."""

    def __init__(self, refused: Sequence[tuple[object, list[FieldError]]]) -> None:
        super().__init__("; ".join(invalid_message(obj, errors) for obj, errors in refused))
        self.refused = refused


def shape_problem(value: object) -> str | None:
    """Why a decoded body cannot be stored: mappings and lists nesting deeper than MAX_NESTING_DEPTH levels, or more
    than MAX_VALUES values as written out (a YAML alias bomb); None when neither. Walked without recursion."""
    stack: list[tuple[object, int]] = [(value, 1)]
    values = 0
    while stack:
        item, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            return f"holds more than {MAX_VALUES} values once written out (a YAML alias bomb?)"
        children: Iterable[object]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_NESTING_DEPTH:
            return f"nests deeper than {MAX_NESTING_DEPTH} levels; no Kubernetes object does"
        stack.extend((child, depth + 1) for child in children)
    return None


def object_errors(obj: object, cluster_scoped: Iterable[str] = ()) -> list[FieldError]:
    """Every field error Kubernetes would report when this object is created (the rules named above)."""
    if not isinstance(obj, dict):
        return [invalid("<object>", obj, "must be a Kubernetes object (a mapping)")]
    errors = _check_type_meta(obj)
    if errors:
        return errors
    kind = obj["kind"]
    errors += _check_object_meta(obj.get("metadata"), kind, kind not in set(cluster_scoped))
    if kind == "Pod":
        _check_pod_spec(_mapping(obj.get("spec"), "spec", errors), "spec", errors)
    elif kind in POD_TEMPLATE_KINDS:
        template = _mapping(_mapping(obj.get("spec"), "spec", errors).get("template"), "spec.template", errors)
        _check_labels_and_annotations(_mapping(template.get("metadata"), "spec.template.metadata", errors),
                                      "spec.template.metadata", errors)
        _check_pod_spec(_mapping(template.get("spec"), "spec.template.spec", errors), "spec.template.spec", errors)
    elif kind == "Service":
        _check_service_spec(_mapping(obj.get("spec"), "spec", errors), errors)
    elif kind == "ConfigMap":
        _check_config_map(obj, errors)
    elif kind == "Secret":
        _check_secret(obj, errors)
    return _unique(errors)


def invalid_message(obj: object, errors: list[FieldError]) -> str:
    """``Pod "../x" is invalid: metadata.name: Invalid value: …``, several errors as ``[e1, e2]`` (NewInvalid)."""
    if not isinstance(obj, dict):
        return f"the object is invalid: {_aggregate(errors)}"
    kind = obj["kind"] if isinstance(obj.get("kind"), str) else "Object"
    api_version = obj["apiVersion"] if isinstance(obj.get("apiVersion"), str) else ""
    group = api_version.rpartition("/")[0]
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    qualified = f"{kind}.{group}" if group else str(kind)
    return f"{qualified} {go_quote(name if isinstance(name, str) else '')} is invalid: {_aggregate(errors)}"


def _aggregate(errors: list[FieldError]) -> str:
    texts = [str(e) for e in errors]
    return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


def _unique(errors: list[FieldError]) -> list[FieldError]:
    seen: set[str] = set()
    kept = []
    for error in errors:
        if str(error) not in seen:
            seen.add(str(error))
            kept.append(error)
    return kept


# -- the parts of an object ------------------------------------------------------------------------------------
def _mapping(value: object, field: str, errors: list[FieldError]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(invalid(field, value, "must be an object"))
        return {}
    return value


def _items(value: object, field: str, errors: list[FieldError]) -> list[tuple[str, dict[str, Any]]]:
    """The entries of a list of objects, each with its field path."""
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append(invalid(field, value, "must be a list"))
        return []
    entries = []
    for index, item in enumerate(value):
        path = f"{field}[{index}]"
        if isinstance(item, dict):
            entries.append((path, item))
        else:
            errors.append(invalid(path, item, "must be an object"))
    return entries


def _string(value: object, field: str, errors: list[FieldError]) -> str | None:
    """The value when it is a non-empty string; a Required or Invalid error otherwise."""
    if value is None or value == "":
        errors.append(required(field))
        return None
    if not isinstance(value, str):
        errors.append(invalid(field, value, "must be a string"))
        return None
    return value


def _name(value: object, field: str, rule: NameRule, errors: list[FieldError]) -> str | None:
    name = _string(value, field, errors)
    if name is not None:
        errors.extend(invalid(field, name, message) for message in rule(name))
    return name


def _string_map(value: object, field: str, errors: list[FieldError]) -> dict[str, str]:
    entries = _mapping(value, field, errors)
    for key, item in entries.items():
        if not isinstance(item, str):
            errors.append(invalid(f"{field}[{key}]", item, "must be a string"))
    return {k: v for k, v in entries.items() if isinstance(v, str)}


def _check_type_meta(obj: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    for field in ("apiVersion", "kind"):
        _string(obj.get(field), field, errors)
    return errors


def _check_object_meta(value: object, kind: str, namespaced: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    metadata = _mapping(value, "metadata", errors)
    if metadata.get("name") in (None, ""):
        errors.append(required("metadata.name", "name or generateName is required"))
    else:
        _name(metadata.get("name"), "metadata.name", NAME_RULES.get(kind, is_dns1123_subdomain), errors)
    if namespaced and metadata.get("namespace") not in (None, ""):  # empty: the request's namespace, "default"
        _name(metadata.get("namespace"), "metadata.namespace", is_dns1123_label, errors)
    _check_labels_and_annotations(metadata, "metadata", errors)
    return errors


def _check_labels_and_annotations(metadata: dict[str, Any], field: str, errors: list[FieldError]) -> None:
    labels = _string_map(metadata.get("labels"), f"{field}.labels", errors)
    _check_labels(labels, f"{field}.labels", errors)
    annotations = _string_map(metadata.get("annotations"), f"{field}.annotations", errors)
    for key in annotations:
        errors.extend(invalid(f"{field}.annotations", key, m) for m in is_qualified_name(key.lower()))
    if sum(_size(k) + _size(v) for k, v in annotations.items()) > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES:
        errors.append(too_long(f"{field}.annotations", TOTAL_ANNOTATION_SIZE_LIMIT_BYTES))


def _check_labels(labels: dict[str, str], field: str, errors: list[FieldError]) -> None:
    for key, value in labels.items():
        errors.extend(invalid(field, key, m) for m in is_qualified_name(key))
        errors.extend(invalid(field, value, m) for m in is_label_value(value))


def _check_pod_spec(spec: dict[str, Any], field: str, errors: list[FieldError]) -> None:
    volumes = _check_volumes(spec.get("volumes"), f"{field}.volumes", errors)
    containers = _items(spec.get("containers"), f"{field}.containers", errors)
    if spec.get("containers") in (None, []):
        errors.append(required(f"{field}.containers"))
    names: set[str] = set()
    for path, container in _items(spec.get("initContainers"), f"{field}.initContainers", errors) + containers:
        _check_container(container, path, volumes, names, errors)


def _check_volumes(value: object, field: str, errors: list[FieldError]) -> set[str]:
    names: set[str] = set()
    for path, volume in _items(value, field, errors):
        name = _name(volume.get("name"), f"{path}.name", is_dns1123_label, errors)
        if name is not None and name in names:
            errors.append(FieldError(f"{path}.name", "Duplicate value", name))
        elif name is not None:
            names.add(name)
        config_map = _mapping(volume.get("configMap"), f"{path}.configMap", errors)
        if "configMap" in volume:
            _name(config_map.get("name"), f"{path}.configMap.name", is_dns1123_subdomain, errors)
            _check_key_to_paths(config_map.get("items"), f"{path}.configMap.items", errors)
        secret = _mapping(volume.get("secret"), f"{path}.secret", errors)
        if "secret" in volume:
            _name(secret.get("secretName"), f"{path}.secret.secretName", is_dns1123_subdomain, errors)
            _check_key_to_paths(secret.get("items"), f"{path}.secret.items", errors)
    return names


def _check_key_to_paths(value: object, field: str, errors: list[FieldError]) -> None:
    for path, item in _items(value, field, errors):
        _string(item.get("key"), f"{path}.key", errors)
        target = _string(item.get("path"), f"{path}.path", errors)
        if target is not None:
            _check_local_path(target, f"{path}.path", errors, reserved_prefix=True)


def _check_local_path(target: str, field: str, errors: list[FieldError], reserved_prefix: bool) -> None:
    """validateLocalDescendingPath (and validateLocalNonReservedPath): relative, and never climbing out."""
    if target.startswith("/"):
        errors.append(invalid(field, target, "must be a relative path"))
    if ".." in target.split("/"):
        errors.append(invalid(field, target, "must not contain '..'"))
    elif reserved_prefix and target.startswith(".."):
        errors.append(invalid(field, target, "must not start with '..'"))


def _check_container(container: dict[str, Any], field: str, volumes: set[str], names: set[str],
                     errors: list[FieldError]) -> None:
    name = _name(container.get("name"), f"{field}.name", is_dns1123_label, errors)
    if name is not None and name in names:
        errors.append(FieldError(f"{field}.name", "Duplicate value", name))
    elif name is not None:
        names.add(name)
    _string(container.get("image"), f"{field}.image", errors)
    port_names: set[str] = set()
    for path, port in _items(container.get("ports"), f"{field}.ports", errors):
        if port.get("name") not in (None, ""):
            port_name = _name(port.get("name"), f"{path}.name", is_port_name, errors)
            if port_name is not None and port_name in port_names:
                errors.append(FieldError(f"{path}.name", "Duplicate value", port_name))
            elif port_name is not None:
                port_names.add(port_name)
        _check_port_number(port.get("containerPort"), f"{path}.containerPort", errors)
    for path, variable in _items(container.get("env"), f"{field}.env", errors):
        _name(variable.get("name"), f"{path}.name", is_env_var_name, errors)
    for path, mount in _items(container.get("volumeMounts"), f"{field}.volumeMounts", errors):
        mount_name = _string(mount.get("name"), f"{path}.name", errors)
        if mount_name is not None and mount_name not in volumes:
            errors.append(FieldError(f"{path}.name", "Not found", mount_name))
        _string(mount.get("mountPath"), f"{path}.mountPath", errors)
        if mount.get("subPath") not in (None, ""):
            sub_path = _string(mount.get("subPath"), f"{path}.subPath", errors)
            if sub_path is not None:
                _check_local_path(sub_path, f"{path}.subPath", errors, reserved_prefix=False)


def _check_port_number(value: object, field: str, errors: list[FieldError]) -> None:
    if value is None or value == 0:
        errors.append(required(field))
    elif isinstance(value, bool) or not isinstance(value, int):
        errors.append(invalid(field, value, "must be an integer"))
    elif not 1 <= value <= 65535:
        errors.append(invalid(field, value, "must be between 1 and 65535, inclusive"))


def _check_service_spec(spec: dict[str, Any], errors: list[FieldError]) -> None:
    ports = _items(spec.get("ports"), "spec.ports", errors)
    names: set[str] = set()
    for path, port in ports:
        if port.get("name") in (None, ""):
            if len(ports) > 1:
                errors.append(required(f"{path}.name"))
        else:
            name = _name(port.get("name"), f"{path}.name", is_port_name, errors)
            if name is not None and name in names:
                errors.append(FieldError(f"{path}.name", "Duplicate value", name))
            elif name is not None:
                names.add(name)
        _check_port_number(port.get("port"), f"{path}.port", errors)
        target = port.get("targetPort")
        if isinstance(target, str):
            errors.extend(invalid(f"{path}.targetPort", target, m) for m in is_port_name(target))
        elif target is not None:
            _check_port_number(target, f"{path}.targetPort", errors)
    _check_labels(_string_map(spec.get("selector"), "spec.selector", errors), "spec.selector", errors)


def _check_config_map(obj: dict[str, Any], errors: list[FieldError]) -> None:
    total = 0
    for key, value in _string_map(obj.get("data"), "data", errors).items():
        errors.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        total += _size(value)
    for key, value in _string_map(obj.get("binaryData"), "binaryData", errors).items():
        errors.extend(invalid(f"binaryData[{key}]", key, m) for m in is_config_map_key(key))
        total += _decoded_size(value, f"binaryData[{key}]", errors)
    if total > MAX_SECRET_SIZE_BYTES:
        errors.append(too_long("", MAX_SECRET_SIZE_BYTES))


def _check_secret(obj: dict[str, Any], errors: list[FieldError]) -> None:
    total = 0
    # The API server folds stringData into data before validating, so its keys are reported as data[key].
    for key, value in _string_map(obj.get("data"), "data", errors).items():
        errors.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        total += _decoded_size(value, f"data[{key}]", errors)
    for key, value in _string_map(obj.get("stringData"), "stringData", errors).items():
        errors.extend(invalid(f"data[{key}]", key, m) for m in is_config_map_key(key))
        total += _size(value)
    if total > MAX_SECRET_SIZE_BYTES:
        errors.append(too_long("data", MAX_SECRET_SIZE_BYTES))


def _decoded_size(value: str, field: str, errors: list[FieldError]) -> int:
    try:
        return len(base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True))
    except (binascii.Error, ValueError):
        errors.append(invalid(field, "<value omitted>", "must be base64-encoded bytes"))
        return 0
