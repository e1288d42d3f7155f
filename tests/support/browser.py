"""Headless Chromium for tests that render HTML offline and check that a page asked for nothing from the network.

Chromium comes from Debian's ``chromium`` package (scripts/install-system-deps.sh). Every launch gets a fresh
profile, a proxy for every scheme (loopback too) that records requests and answers none, and a host resolver
that resolves nothing but that proxy: nothing reaches the network, so a page that needs it renders incomplete.
Chromium itself talks to Google services in the background (update checks, network time, accounts) even with
background networking off, so "the page made no request" is read from Chromium's NetLog, which files each
request under the site of the top-level page it was made for: the page's own requests are those filed under
``file://``.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT = 120.0


def executable() -> str | None:
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=True)
    return done.stdout.strip()


class _Refuse(http.server.BaseHTTPRequestHandler):
    server: RecordingProxy

    def _refuse(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        self.send_error(503, "offline test proxy")

    do_GET = do_HEAD = do_POST = do_PUT = do_OPTIONS = do_CONNECT = _refuse

    def log_message(self, format: str, *args: object) -> None:
        pass


class RecordingProxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Refuse)
        self.requests: list[str] = []

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def recording_proxy() -> Iterator[RecordingProxy]:
    proxy = RecordingProxy()
    thread = threading.Thread(target=proxy.serve_forever, name="recording-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)


def _argv(binary: str, proxy: RecordingProxy, profile: Path) -> list[str]:
    return [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        f"--proxy-server={proxy.address}",
        "--proxy-bypass-list=<-loopback>",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # the proxy stays reachable
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-default-browser-check",
        "--no-first-run",
    ]


def dump_dom(binary: str, page: Path, proxy: RecordingProxy, profile: Path, netlog: Path) -> str:
    """The DOM after Chromium loaded ``page`` (its load event waits for every subresource); the NetLog of the
    launch goes to ``netlog`` (see ``page_requests``)."""
    argv = [*_argv(binary, proxy, profile), f"--log-net-log={netlog}", "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise AssertionError(f"chromium --dump-dom exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def screenshot(binary: str, page: Path, proxy: RecordingProxy, profile: Path, out: Path, size: tuple[int, int]) -> Path:
    argv = [
        *_argv(binary, proxy, profile),
        "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}",
        f"--screenshot={out}",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0 or not out.exists():
        raise AssertionError(f"chromium --screenshot exited {done.returncode}: {done.stderr[-2000:]}")
    return out


def page_requests(netlog: Path) -> list[str]:
    """URLs that Chromium's network stack was asked to load for a ``file://`` page, other than files: the page's
    own subresources and frames. Background requests of the browser are filed under no site or Google's."""
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a NetLog may be left unterminated (Chromium's net_log docs)
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start or "url" not in params:
            continue
        if params.get("network_isolation_key", "").startswith("file://") and not params["url"].startswith("file:"):
            urls.append(params["url"])
    return urls
