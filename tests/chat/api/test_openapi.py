from __future__ import annotations

import pytest
from django.test import Client

from tests.chat.api.conftest import PublicApi
from tests.chat.conftest import ChatWorld

PREFIX = "/p/chat/{public_key}/api"


class OpenApiTests:
    def test_it_serves_the_schema_listing_every_operation(self, db: None):
        response = Client().get("/p/chat/api/openapi.json")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("application/json")
        schema = response.json()
        assert schema["openapi"].startswith("3.")
        operations = {(method, path) for path, item in schema["paths"].items() for method in item}
        assert operations == {
            ("post", f"{PREFIX}/visitor"),
            ("patch", f"{PREFIX}/visitor"),
            ("post", f"{PREFIX}/conversations"),
            ("get", f"{PREFIX}/conversations/{{conversation_id}}/messages"),
            ("post", f"{PREFIX}/conversations/{{conversation_id}}/messages"),
            ("post", f"{PREFIX}/conversations/{{conversation_id}}/read"),
            ("post", f"{PREFIX}/page-views"),
        }

    def test_it_documents_the_token_header_and_the_error_shape(self, db: None):
        schema = Client().get("/p/chat/api/openapi.json").json()
        schemes = schema["components"]["securitySchemes"]
        assert any(
            s.get("in") == "header" and s.get("name") == "X-Chat-Visitor-Token"
            for s in schemes.values()
        )
        send = schema["paths"][f"{PREFIX}/conversations/{{conversation_id}}/messages"]["post"]
        assert {"201", "401", "404", "422", "429"} <= set(send["responses"])
        assert "ErrorOut" in schema["components"]["schemas"]


class ModuleGateTests:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("get", "/p/chat/{key}.js"),
            ("get", "/p/chat/{key}"),
            ("post", "/p/chat/{key}/api/visitor"),
            ("options", "/p/chat/{key}/api/visitor"),
            ("get", "/p/chat/api/openapi.json"),
        ],
    )
    def test_it_answers_404_while_the_chat_module_is_disabled(
        self, world: ChatWorld, settings, method: str, path: str
    ):
        settings.CRM_MODULES = []
        url = path.format(key=world.widget.public_key)
        response = getattr(Client(), method)(
            url, headers={"X-Chat-Visitor-Token": world.token, "Origin": "https://shop.example"}
        )
        assert response.status_code == 404
        assert world.widget.name.encode() not in response.content
        assert "Access-Control-Allow-Origin" not in response

    def test_it_writes_nothing_while_the_chat_module_is_disabled(
        self, world: ChatWorld, public: PublicApi, settings
    ):
        from crm.chat.models import ChatVisitor

        settings.CRM_MODULES = []
        assert public.identify().status_code == 404
        assert ChatVisitor.objects.count() == 2
        settings.CRM_MODULES = ["chat"]
        assert public.identify().status_code == 201
