from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from crm.chat.models import ChatWidget
from crm.chat.services import chat_service


@pytest.mark.django_db
class WidgetTests:
    def test_it_creates_a_widget_with_a_64_char_key_and_defaults(self):
        w = chat_service.create_widget(name="Site")
        assert len(w.public_key) == 64 and w.color == "#2563eb" and w.position == "bottom-right"
        assert w.allowed_origins == []
        other = chat_service.create_widget(name="Site 2")
        assert other.public_key != w.public_key

    @override_settings(CRM_PUBLIC_URL="https://crm.example.com/")
    def test_the_embed_snippet_points_at_the_public_url(self):
        w = chat_service.create_widget(name="Site")
        snippet = w.embed_snippet()
        assert f"s.src='https://crm.example.com/p/chat/{w.public_key}.js'" in snippet
        assert snippet.startswith("<!-- crm-chat widget -->\n<script>(function(){")

    def test_it_normalises_origins_from_text(self):
        w = chat_service.create_widget(
            name="S", allowed_origins="HTTPS://Shop.Example:443/\n\nhttp://localhost:3000\n"
        )
        assert w.allowed_origins == ["https://shop.example", "http://localhost:3000"]
        assert w.origin_allowed("https://shop.example")
        assert not w.origin_allowed("https://evil.example")
        assert not w.origin_allowed(None)

    @pytest.mark.parametrize(
        "fields",
        [
            {"color": "blue"},
            {"color": "#12345"},
            {"position": "top"},
            {"allowed_origins": "https://*.example.com"},
            {"allowed_origins": "https://shop.example/path"},
            {"allowed_origins": "ftp://shop.example"},
            {"allowed_origins": ["https://Shop.example"]},
            {"name": ""},
        ],
    )
    def test_it_rejects_invalid_settings_and_writes_nothing(self, fields):
        with pytest.raises(ValidationError):
            chat_service.create_widget(**{"name": "S", **fields})
        assert ChatWidget.objects.count() == 0

    def test_regenerating_the_key_invalidates_the_old_one(self):
        w = chat_service.create_widget(name="S")
        old = w.public_key
        chat_service.regenerate_public_key(widget=w)
        assert ChatWidget.objects.get(pk=w.pk).public_key == w.public_key != old
