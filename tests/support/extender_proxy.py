"""An HTTP relay between kube-scheduler and topolvm-scheduler that remembers which node the extender named for
each pod, so a test can compare it with the node kube-scheduler chose.

Used by tests/integration/test_extender_kube_scheduler.py. The extender names a node in its answer to
``predicate`` when exactly one node passes (kube-scheduler then skips scoring) and in its answer to
``prioritize`` when one node has the top score. ``equalize`` rewrites every ``prioritize`` answer to the same
score on every node, as an extender that left ties to kube-scheduler would answer: the control that shows the
comparison can fail.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from typing import Any


class Relay:
    """Listens on 127.0.0.1:``port`` and forwards every POST to ``upstream`` (``http://host:port``)."""

    def __init__(self, port: int, upstream: str, *, equalize: bool = False) -> None:
        self.upstream = upstream
        self.equalize = equalize
        self.lock = threading.Lock()
        self.named: dict[str, str | None] = {}  # "namespace/name" -> the node the extender named last (None: tied)
        self.tied_answers = 0  # prioritize answers (before any rewrite) whose top score several nodes share
        self.answers = 0  # prioritize answers
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = urllib.request.Request(
                    relay.upstream + self.path, data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, answer = response.status, response.read()
                answer = relay.observe(self.path, json.loads(body), answer)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="extender-relay", daemon=True)

    def __enter__(self) -> Relay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def observe(self, path: str, args: dict[str, Any], answer: bytes) -> bytes:
        """Remember the node ``answer`` names for the pod of ``args``; returns the answer to pass on."""
        meta = args["Pod"]["metadata"]
        pod = f"{meta.get('namespace', 'default')}/{meta['name']}"
        reply = json.loads(answer)
        if path.endswith("/predicate"):
            passed = reply.get("NodeNames") or []
            if len(passed) == 1:
                with self.lock:
                    self.named[pod] = passed[0]
            return answer
        if not path.endswith("/prioritize") or not reply:
            return answer
        top = max(entry["Score"] for entry in reply)
        best = [entry["Host"] for entry in reply if entry["Score"] == top]
        with self.lock:
            self.answers += 1
            self.tied_answers += len(best) > 1
            self.named[pod] = best[0] if len(best) == 1 else None
        if self.equalize:
            return json.dumps([{"Host": entry["Host"], "Score": top} for entry in reply]).encode()
        return answer
