"""Widget weight: what a host page downloads, gzipped at level 9, from a running server.

* loader: ``/p/chat/<key>.js``, fetched by every page of the host site;
* first open: the iframe HTML ``/p/chat/<key>`` plus every script and stylesheet it
  references (``widget.js``, ``widget.css``), each compressed on its own as a server
  would send them.
"""

from __future__ import annotations

import gzip
import re
import urllib.request

from bench.common import HOST, BenchError

# Published sizes other widgets ship (gzipped), for scale.
ANCHORS = {
    "rocketchat_loader": 3.1 * 1024,
    "rocketchat_iframe": 73 * 1024,
    "papercups_widget": 119 * 1024,
}
ASSET_RE = re.compile(
    r"<(?:script[^>]*?\ssrc|link[^>]*?rel=\"stylesheet\"[^>]*?\shref)=\"([^\"]+)\""
)


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise BenchError(f"GET {url} answered {response.status}")
        return response.read()


def _gz(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9))


def measure(port: int, key: str) -> dict:
    base = f"http://{HOST}:{port}"
    loader = _get(f"{base}/p/chat/{key}.js")
    page = _get(f"{base}/p/chat/{key}")
    assets = {src: _get(src if src.startswith("http") else base + src)
              for src in ASSET_RE.findall(page.decode())}  # fmt: skip
    if not any(s.endswith(".js") for s in assets) or not any(s.endswith(".css") for s in assets):
        raise BenchError(f"the widget page references no script or stylesheet: {list(assets)}")
    parts = {"iframe.html": page, **{src.rsplit("/", 1)[-1]: body for src, body in assets.items()}}
    return {
        "loader_bytes": len(loader),
        "loader_gz": _gz(loader),
        "first_open_bytes": sum(len(b) for b in parts.values()),
        "first_open_gz": sum(_gz(b) for b in parts.values()),
        "parts_gz": {name: _gz(body) for name, body in parts.items()},
    }
