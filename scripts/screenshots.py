"""Regenerate the README screenshots from the real product in Debian's Chromium.

Starts `crm run` with demo data in a temporary data directory (and the demo host
website on another port), then drives the widget and the inbox with Playwright:

    .venv/bin/python scripts/screenshots.py        # or: make screenshots
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("CRM_TEST_CHROMIUM", "/usr/bin/chromium")
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"the product did not start on port {port}")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    port, site_port = _free_port(), 8001
    data = tempfile.mkdtemp(prefix="crm-shots-")
    env = {
        **os.environ,
        "CRM_DATA_DIR": data,
        "CRM_PUBLIC_URL": f"http://localhost:{port}",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    env.pop("DATABASE_URL")
    env.pop("REDIS_URL")
    subprocess.run([BIN / "crm", "demo"], env=env, check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(
        [BIN / "crm", "run", "--port", str(port), "--demo-site", str(site_port),
         "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    try:
        _wait_for_port(port)
        _wait_for_port(site_port)
        shoot(f"http://localhost:{port}", f"http://127.0.0.1:{site_port}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def shoot(crm: str, site: str) -> None:
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        visitor = browser.new_context(viewport={"width": 1280, "height": 800})
        page = visitor.new_page()
        page.goto(site + "/")
        frame = page.frame_locator("iframe[title=Chat]")
        frame.get_by_role("button", name="Chat with us").click()
        frame.get_by_placeholder("Your name").fill("Lena")
        box = frame.get_by_role("textbox", name="Message")
        box.fill("Hi! Can I change my subscription to every two weeks?")
        box.press("Enter")
        frame.get_by_text("every two weeks?").wait_for()

        agent = browser.new_context(viewport={"width": 1440, "height": 900})
        inbox = agent.new_page()
        inbox.goto(crm + "/login/")
        inbox.get_by_label("Username").fill("owner")
        inbox.get_by_label("Password").fill("owner-demo-1")
        inbox.get_by_role("button", name="Log in").click()
        inbox.goto(crm + "/crm/chat/")
        inbox.get_by_role("link", name="C1004").wait_for()
        inbox.screenshot(path=OUT / "inbox.png")
        inbox.get_by_role("link", name="C1004").click()
        reply = inbox.get_by_label("Reply to Lena")
        reply.fill("Of course, Lena! I've switched it for you — the next bag ships on Monday.")
        reply.press("Enter")
        frame.get_by_text("the next bag ships on Monday").wait_for()
        inbox.get_by_text("Read").first.wait_for(timeout=5000)
        inbox.screenshot(path=OUT / "conversation.png")
        page.screenshot(path=OUT / "widget.png")

        inbox.goto(crm + "/crm/chat/?status=all&q=subscription")
        inbox.locator(".search-hit mark").first.wait_for()
        inbox.screenshot(path=OUT / "search.png")
        inbox.get_by_role("searchbox", name="Search everything").fill("globex")
        inbox.get_by_role("searchbox", name="Search everything").press("Enter")
        inbox.get_by_role("heading", name="Leads").wait_for()
        inbox.screenshot(path=OUT / "global-search.png")

        phone = browser.new_context(viewport={"width": 360, "height": 720}, is_mobile=True)
        mobile = phone.new_page()
        mobile.goto(site + "/pricing")
        mframe = mobile.frame_locator("iframe[title=Chat]")
        mframe.get_by_role("button", name="Chat with us").click()
        mframe.get_by_role("textbox", name="Message").wait_for()
        mobile.screenshot(path=OUT / "widget-phone.png")
        browser.close()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
