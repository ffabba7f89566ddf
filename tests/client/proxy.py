"""A small HTTP proxy on 127.0.0.1 in front of the live server, which can drop answers.

`drop_first` requests of a method are forwarded and answered by HQ, but the proxy then closes the
client's connection without relaying the answer: the client cannot tell whether its request was
recorded, which is what the client's idempotent retries are for.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class DroppingProxy:
    """Forwards every request to `upstream`; drops the answers of the first `drop_first` `method` requests."""

    def __init__(
        self,
        upstream: str,
        *,
        method: str = "POST",
        drop_first: int = 1,
        on_upstream: Callable[[int], object] | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.method, self.to_drop = method, drop_first
        self.on_upstream = on_upstream  # called with each upstream status before it is relayed
        self.seen: list[tuple[str, str, bytes]] = []  # method, path, body of every request forwarded
        self.upstream_statuses: list[int] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def _drop_this(self, method: str) -> bool:
        with self._lock:
            if method == self.method and self.to_drop > 0:
                self.to_drop -= 1
                return True
            return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                with proxy._lock:
                    proxy.seen.append((self.command, self.path, body))
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=30)
                try:
                    conn.request(self.command, self.path, body or None, headers)
                    answer = conn.getresponse()
                    payload = answer.read()
                finally:
                    conn.close()
                with proxy._lock:
                    proxy.upstream_statuses.append(answer.status)
                if proxy.on_upstream is not None:
                    proxy.on_upstream(answer.status)
                if proxy._drop_this(self.command):
                    self.close_connection = True  # HQ answered; the client never hears it
                    return
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
