"""v1 Status objects, as the API server returns them for errors (and for some deletes)."""

from __future__ import annotations

from typing import Any

from .discovery import ResourceType

Obj = dict[str, Any]


def status(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                 "reason": reason}
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class ApiError(Exception):
    """A failure the fake answers with a Status body and its HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = status(code, reason, message, details)


def _details(resource: ResourceType, name: str) -> Obj:
    details: Obj = {"name": name}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.plural
    return details


def not_found(resource: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found', _details(resource, name))


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})


def already_exists(resource: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{resource.qualified} "{name}" already exists', _details(resource, name))


def conflict(resource: ResourceType, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    _details(resource, name))


def invalid(resource: ResourceType, name: str, field: str, message: str) -> ApiError:
    details = {**_details(resource, name), "kind": resource.kind,
               "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]}
    return ApiError(422, "Invalid", f'{resource.kind} "{name}" is invalid: {field}: {message}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def resource_not_served() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def internal_error(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


UNAUTHORIZED = status(401, "Unauthorized", "Unauthorized")
