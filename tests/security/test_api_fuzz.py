"""Fuzzing the public widget API with schemathesis, over real HTTP against uvicorn.

The schema is the live ``/p/chat/api/openapi.json``. Every operation gets a bounded,
derandomized run of schema-valid and schema-violating requests that carry a real
visitor token, widget key and conversation id, so they reach the handlers rather
than bouncing off the 401/404 guards. The checks: no 5xx, only documented status
codes, JSON bodies and headers that match the schema, schema-violating input
refused, and the token not ignored (the same request without it is refused).

``positive_data_acceptance`` is left out on purpose: the API validates more than
the schema can say (http(s)-only URLs, email syntax, blank bodies, the configured
body cap) and answers those with a documented 422.

Hypothesis rarely writes a NUL, a lone surrogate or a 255-character email that is
still valid, so those go through the same schemathesis checks as explicit cases.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crm.chat.api import TOKEN_HEADER, api
from crm.chat.models import ChatConversation, ChatWidget
from crm.chat.services import chat_service
from tests.security.conftest import NO_RATE_LIMITS

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 25  # per operation and generation mode: 7 x 2 x 25 = 350 generated requests
DOCUMENT = api.get_openapi_schema(path_prefix="/p/chat")
OPERATIONS = [(method, path) for path, item in DOCUMENT["paths"].items() for method in item]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    ignored_auth,
]
# A valid body per operation; hostile text is put into one string field at a time.
BASE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/p/chat/{public_key}/api/visitor"): {"page": {"url": "https://shop.example/"}},
    ("patch", "/p/chat/{public_key}/api/visitor"): {"name": "Ann"},
    ("post", "/p/chat/{public_key}/api/conversations"): {},
    ("post", "/p/chat/{public_key}/api/conversations/{conversation_id}/messages"): {"body": "hi"},
    ("post", "/p/chat/{public_key}/api/conversations/{conversation_id}/read"): {},
    ("post", "/p/chat/{public_key}/api/page-views"): {"url": "https://shop.example/"},
}
LONG_VALID_EMAIL = "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".example"  # 264 characters
# 195 characters as sent, 319 once lower-cased ("İ" lowers to two characters).
LOWERS_LONGER_EMAIL = "a" * 64 + "@" + ".".join(["İ" * 31] * 4) + ".ex"
HOSTILE_TEXT = [
    "\x00",
    "a\x00b",
    "https://shop.example/\x00",
    "\ud800",
    "https://shop.example/\udfff",
    "\u202e\u2066gnp.exe",
    "\r\n\tX-Injected: 1",
    "https://shop.example/\r\nSet-Cookie: x=1",
    "https://[::1/",
    "javascript:alert(1)",
    "\x01javascript:alert(1)",
    " " * 50,
    LONG_VALID_EMAIL,
    LOWERS_LONGER_EMAIL,
    "İ" * 300,
    "𝕏" * 300,  # noqa: RUF001 (deliberate look-alike)
]


@dataclass
class Target:
    server: Any
    widget: ChatWidget
    token: str
    conversation: ChatConversation

    def schema(self) -> Any:
        return schemathesis.openapi.from_url(f"{self.server.url}/p/chat/api/openapi.json")

    def path_parameters(self, path: str) -> dict[str, str]:
        params = {"public_key": self.widget.public_key}
        if "{conversation_id}" in path:
            params["conversation_id"] = str(self.conversation.external_id)
        return params


@pytest.fixture
def target(asgi_server, settings) -> Iterator[Target]:  # type: ignore[no-untyped-def]
    settings.CRM_CHAT_RATE_LIMITS = NO_RATE_LIMITS
    widget = chat_service.create_widget(name="Fuzzed", allowed_origins=["https://shop.example"])
    visitor, token = chat_service.identify_visitor(widget=widget, token=None)
    assert token is not None
    conversation = chat_service.open_conversation(visitor=visitor)
    chat_service.send_visitor_message(conversation=conversation, visitor=visitor, body="hello")
    yield Target(asgi_server, widget, token, conversation)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _string_fields(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple]:
    """Paths of every string property of a request body schema (nullable ones too)."""
    schema = _resolve(schema)
    for option in schema.get("anyOf", []):
        yield from _string_fields(option, prefix)
    if schema.get("type") == "string":
        yield prefix
    for name, sub in schema.get("properties", {}).items():
        yield from _string_fields(sub, (*prefix, name))


def _request_schema(method: str, path: str) -> dict[str, Any] | None:
    body = DOCUMENT["paths"][path][method].get("requestBody")
    return body["content"]["application/json"]["schema"] if body else None


def _with(body: dict[str, Any], field: tuple[str, ...], value: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    for part in field[:-1]:
        node = node.setdefault(part, {})
    node[field[-1]] = value
    return out


HOSTILE_FIELDS = [
    pytest.param(method, path, field, id=f"{method}-{path.split('/api/')[1]}-{'.'.join(field)}")
    for method, path in OPERATIONS
    if (schema := _request_schema(method, path))
    for field in sorted(set(_string_fields(schema)))
]


class ApiFuzzTests:
    def test_it_fuzzes_every_operation_of_the_live_document(self, target: Target) -> None:
        live = target.schema().raw_schema
        assert [(m, p) for p, item in live["paths"].items() for m in item] == OPERATIONS
        assert len(OPERATIONS) == 7
        assert {(m, p) for m, p in OPERATIONS if _request_schema(m, p)} == set(BASE_BODIES)

    @pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    @pytest.mark.parametrize(("method", "path"), OPERATIONS)
    def test_it_survives_generated_requests(
        self, target: Target, method: str, path: str, mode: GenerationMode
    ) -> None:
        operation = target.schema()[path][method]
        strategy = operation.as_strategy(
            mode,
            path_parameters=target.path_parameters(path),
            headers={TOKEN_HEADER: target.token},
        )
        statuses: list[int] = []

        @hypothesis_settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            statuses.append(case.call_and_validate(checks=CHECKS).status_code)

        fuzz()
        assert len(statuses) >= MAX_EXAMPLES // 2
        if mode is GenerationMode.POSITIVE:
            # The token, key and ids were right: some requests did reach the handler.
            assert any(200 <= s < 300 for s in statuses), statuses

    @pytest.mark.parametrize(("method", "path", "field"), HOSTILE_FIELDS)
    def test_it_survives_hostile_text_in_every_string_field(
        self, target: Target, method: str, path: str, field: tuple[str, ...]
    ) -> None:
        operation = target.schema()[path][method]
        failures = []
        for value in HOSTILE_TEXT:
            case = operation.Case(
                path_parameters=target.path_parameters(path),
                headers={TOKEN_HEADER: target.token},
                body=_with(BASE_BODIES[(method, path)], field, value),
                media_type="application/json",
            )
            try:
                response = case.call_and_validate(checks=CHECKS)
            except (FailureGroup, AssertionError) as exc:
                failures.append(f"{value[:40]!r}: {exc}")
                continue
            if response.status_code not in {200, 201, 403, 422}:
                failures.append(f"{value[:40]!r}: {response.status_code} {response.text[:200]}")
        assert not failures, "\n\n".join(failures)

    def test_it_checks_every_string_field(self) -> None:
        assert len(HOSTILE_FIELDS) == 11
