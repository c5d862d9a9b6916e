"""`crm run` as a real process tree: it stops cleanly, announces itself last, and its
demo site works on any port.

Each test starts `crm run` on free loopback ports with its own SQLite data directory
(demo data loaded by `crm demo`), in its own session so the ``finally`` blocks can
kill whatever a failing test leaves behind. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.core.test_cli import ROOT, crm

STARTUP_TIMEOUT = 90.0
EXIT_TIMEOUT = 30.0
BANNER_MARK = "Login:      owner"


def http_status(port: int, path: str = "/login/", *, headers: dict[str, str] | None = None) -> int:
    """The status of one GET to the loopback port; 0 when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from the kernel's per-thread child lists."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:  # the task or process has just gone
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class RunningCrm:
    """A `crm run` subprocess and its merged stdout/stderr, read line by line."""

    proc: subprocess.Popen[str]
    port: int
    demo_port: int
    lines: list[str] = field(default_factory=list)
    # Whether the CRM answered HTTP at the moment the banner's login line was read.
    answered_at_banner: bool | None = None

    def read_output(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if BANNER_MARK in line and self.answered_at_banner is None:
                self.answered_at_banner = http_status(self.port) != 0
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def demo_data_dir(tmp_path: Path) -> Path:
    out = crm("demo", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    return tmp_path


@pytest.fixture
def start_crm(demo_data_dir: Path) -> Iterator[Callable[..., RunningCrm]]:
    """Start `crm run` (demo site included); kill its whole session afterwards."""
    started: list[RunningCrm] = []

    def start(*extra: str) -> RunningCrm:
        port, demo_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            CRM_DATA_DIR=str(demo_data_dir),
            CRM_PUBLIC_URL=f"http://127.0.0.1:{port}",
            PYTHONUNBUFFERED="1",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "crm.cli", "run", "--host", "127.0.0.1",
             "--port", str(port), "--demo-site", str(demo_port), *extra],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        run = RunningCrm(proc=proc, port=port, demo_port=demo_port)
        started.append(run)
        threading.Thread(target=run.read_output, daemon=True).start()
        wait_until(
            lambda: http_status(port) != 0 or proc.poll() is not None,
            STARTUP_TIMEOUT,
            "crm run answering HTTP",
        )
        assert proc.poll() is None, f"crm run exited early:\n{run.output}"
        return run

    try:
        yield start
    finally:
        for run in started:
            leftovers = descendants(run.proc.pid)
            if run.proc.poll() is None:
                run.proc.kill()
            for pid in leftovers:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            run.proc.wait(timeout=10)
            # A reparented orphan keeps the session's process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("signum", "workers"),
    [(signal.SIGTERM, "1"), (signal.SIGINT, "1"), (signal.SIGTERM, "2")],
    ids=["sigterm", "sigint", "sigterm-2-workers"],
)
def test_a_stop_signal_ends_the_whole_process_tree(
    start_crm: Callable[..., RunningCrm], signum: signal.Signals, workers: str
) -> None:
    run = start_crm("--workers", workers)
    tree = descendants(run.proc.pid)
    assert tree, "the job worker should run as a child process"
    if workers == "2":
        assert len(tree) >= 3, "two uvicorn workers and the job worker"

    run.proc.send_signal(signum)
    try:
        run.proc.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"crm run still running {EXIT_TIMEOUT:.0f} s after {signum.name}")

    wait_until(lambda: not any(alive(pid) for pid in tree), 5, "children gone")
    assert http_status(run.demo_port, "/") == 0
    assert "Traceback" not in run.output, run.output


def test_the_urls_and_login_come_last_once_the_server_answers(
    start_crm: Callable[..., RunningCrm],
) -> None:
    run = start_crm()
    wait_until(lambda: run.answered_at_banner is not None, 30, "the login line")
    assert run.answered_at_banner, f"printed before the server answered:\n{run.output}"

    output = run.output
    banner_at = output.index(BANNER_MARK)
    # The demo's new-chat emails (printed by the worker) and uvicorn's start-up log
    # come before the block, so the block is what stays on screen.
    assert output.rindex("Subject: New chat request") < banner_at, output
    assert output.index("Uvicorn running on") < banner_at, output
    block = output[output.rindex("crm-chat is ready", 0, banner_at) :]
    assert f"CRM:        http://127.0.0.1:{run.port}/crm/" in block
    assert f"Demo site:  http://127.0.0.1:{run.demo_port}/" in block
    assert "Login:      owner / owner-demo-1" in block


def test_the_demo_site_on_any_port_is_an_allowed_origin(
    start_crm: Callable[..., RunningCrm],
) -> None:
    run = start_crm("--no-worker")
    page = http.client.HTTPConnection("127.0.0.1", run.demo_port, timeout=5)
    page.request("GET", "/")
    html = page.getresponse().read().decode()
    page.close()
    key = html.split("/p/chat/", 1)[1].split(".js", 1)[0]

    origin = f"http://127.0.0.1:{run.demo_port}"
    conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=5)
    try:
        conn.request("GET", f"/p/chat/{key}")
        framing = conn.getresponse()
        framing.read()
        conn.request(
            "POST",
            f"/p/chat/{key}/api/visitor",
            body=json.dumps({}),
            headers={"Origin": origin, "Content-Type": "application/json"},
        )
        identify = conn.getresponse()
        body = identify.read().decode()
    finally:
        conn.close()
    # The iframe may be framed by the demo page, and its API answers that page.
    assert origin in (framing.getheader("Content-Security-Policy") or "")
    assert identify.status == 201, body
