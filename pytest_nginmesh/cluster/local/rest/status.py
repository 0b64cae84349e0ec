"""Kubernetes ``Status`` answers, with the reasons and messages kube-apiserver gives.

Messages follow k8s.io/apimachinery/pkg/api/errors/errors.go (NewNotFound, NewAlreadyExists, NewConflict,
NewInvalid, NewBadRequest, NewUnauthorized, NewForbidden, NewMethodNotSupported): kubectl prints them as
``Error from server (<Reason>): <message>``.
"""

from __future__ import annotations

from ....kube import Obj


class ApiError(Exception):
    """An error the API answers with a Status of this code, reason and message."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiError:
    what = _qualified(resource, group)
    return ApiError(404, "NotFound", f'{what} "{name}" not found',
                    {"name": name, "group": group, "kind": resource})


def already_exists(resource: str, group: str, name: str) -> ApiError:
    what = _qualified(resource, group)
    return ApiError(409, "AlreadyExists", f'{what} "{name}" already exists',
                    {"name": name, "group": group, "kind": resource})


def conflict(resource: str, group: str, name: str) -> ApiError:
    what = _qualified(resource, group)
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {what} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": group, "kind": resource})


def invalid(kind: str, group: str, name: str, causes: list[str]) -> ApiError:
    """422: ``Kind "name" is invalid: field: reason`` (several causes joined as kube-apiserver does)."""
    what = f"{kind}.{group}" if group else kind
    message = f'{what} "{name}" is invalid: ' + (causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]")
    return ApiError(422, "Invalid", message, {"name": name, "group": group, "kind": kind,
                                              "causes": [{"message": c} for c in causes]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def method_not_supported(resource: str, group: str, verb: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"{verb} is not supported on resources of kind "
                    f'"{_qualified(resource, group)}"')


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted '
                    f'media types include: application/json, application/yaml; got "{content_type}"')


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def timed_out() -> ApiError:
    """504 as kube-apiserver's request timeout answers (apiserver/pkg/endpoints/handlers/finisher, NewTimeoutError)."""
    return ApiError(504, "Timeout", "Timeout: request did not complete within requested timeout - context deadline "
                    "exceeded")


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f'the server could not find the requested resource ("{path}")')
