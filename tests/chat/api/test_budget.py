"""Byte budgets of DESIGN.md §6, measured on what the CRM actually serves.

Sizes are gzip level 9 of the response bodies as fetched through the test client
(the loader with a real widget's configuration filled in, the iframe page as
rendered, and the static files at the URLs that page references).
"""

from __future__ import annotations

import gzip
from html.parser import HTMLParser

from asgiref.sync import async_to_sync
from django.http import HttpResponseBase
from django.test import Client

from tests.chat.conftest import ChatWorld

LOADER_BUDGET = 1024
FIRST_OPEN_BUDGET = 12 * 1024


def _body(response: HttpResponseBase) -> bytes:
    if not getattr(response, "streaming", False):
        return response.content  # type: ignore[attr-defined]
    content = response.streaming_content  # type: ignore[attr-defined]
    if hasattr(content, "__aiter__"):  # servestatic answers with an async file iterator

        async def read() -> bytes:
            return b"".join([chunk async for chunk in content])

        return async_to_sync(read)()
    return b"".join(content)


def _gz(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9))


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"] or "")
        if tag == "link" and a.get("rel") == "stylesheet" and a.get("href"):
            self.styles.append(a["href"] or "")


class BudgetTests:
    def test_it_keeps_the_loader_within_1_kb_gzipped(self, world: ChatWorld):
        response = Client().get(f"/p/chat/{world.widget.public_key}.js")
        assert response.status_code == 200
        raw = _body(response)
        size = _gz(raw)
        assert size <= LOADER_BUDGET, (
            f"loader is {size} B gzipped ({len(raw)} B raw), budget {LOADER_BUDGET} B"
        )

    def test_it_keeps_the_first_open_within_12_kb_gzipped(self, world: ChatWorld):
        client = Client()
        page = client.get(f"/p/chat/{world.widget.public_key}")
        assert page.status_code == 200
        html = _body(page)
        assets = _Assets()
        assets.feed(html.decode())
        scripts = [u.rsplit("/", 1)[-1].split("?")[0] for u in assets.scripts]
        assert scripts == ["stream.js", "widget.js"]
        assert [u.rsplit("/", 1)[-1].split("?")[0] for u in assets.styles] == ["widget.css"]
        sizes = {"iframe html": (len(html), _gz(html))}
        for url in assets.scripts + assets.styles:
            response = client.get(url)
            assert response.status_code == 200, url
            assert "Content-Encoding" not in response, "measure the raw file, then gzip it"
            body = _body(response)
            sizes[url] = (len(body), _gz(body))
        total = sum(gz for _, gz in sizes.values())
        detail = ", ".join(f"{name}: {gz} B gz / {raw} B raw" for name, (raw, gz) in sizes.items())
        assert total <= FIRST_OPEN_BUDGET, (
            f"first open is {total} B gzipped, budget {FIRST_OPEN_BUDGET} B ({detail})"
        )
