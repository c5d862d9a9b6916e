"""The one error shape of every JSON answer: ``{"error": {"code", "message"}}``.

The public API, its middleware and the inbox's JSON endpoints all answer errors
through ``error_response``, so a client parses one shape with the right status.
"""

from __future__ import annotations

from django.http import JsonResponse


def error_response(
    status: int, code: str, message: str, *, fields: dict[str, list[str]] | None = None
) -> JsonResponse:
    """``{"error": {"code", "message"[, "fields"]}}`` with ``status``."""
    error: dict[str, object] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return JsonResponse({"error": error}, status=status)
