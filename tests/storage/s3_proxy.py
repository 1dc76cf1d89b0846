"""A real HTTP proxy in front of the tests' S3 server that fails chosen requests.

Every request is forwarded to the server as it came (method, path, headers, body) and the
server's answer is returned, except the requests that ``failing`` matches: those get S3's own
throttling answer (503 ``SlowDown``), which the AWS SDKs retry and then raise. No mock: the
clients under test speak S3 over TCP to this proxy, and it to moto's server.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# (method, path, query) → whether to fail the request
Failing = Callable[[str, str, dict[str, list[str]]], bool]
_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect

    def _forward(self) -> None:
        server: _ProxyServer = self.server  # type: ignore[assignment]
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if server.failing(self.command, url.path, parse_qs(url.query)):
            server.failed += 1
            self._answer(503, {"Content-Type": "application/xml"}, _SLOW_DOWN)
            return
        conn = http.client.HTTPConnection(*server.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            kept = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP}
            self._answer(resp.status, kept, data)
        finally:
            conn.close()

    def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() != "content-length":
                self.send_header(k, v)
        # a HEAD answer has no body but the object's length
        given = {k.lower(): v for k, v in headers.items()}.get("content-length", "0")
        length = given if self.command == "HEAD" else len(data)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], failing: Failing) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream, self.failing, self.failed = upstream, failing, 0


@contextmanager
def faulty_s3(endpoint: str, failing: Failing) -> Iterator[_ProxyServer]:
    """A proxy to the S3 server at ``endpoint`` (``http://host:port``) that answers the requests
    ``failing`` matches with 503 SlowDown; its URL is ``http://127.0.0.1:<server_port>``."""
    url = urlsplit(endpoint)
    server = _ProxyServer((url.hostname, url.port), failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def listing_of(prefix: str) -> Failing:
    """Fails the listings (ListObjects) of keys below ``prefix`` (``bucket/key/prefix``)."""
    bucket, _, key = prefix.partition("/")

    def failing(method: str, path: str, query: dict[str, list[str]]) -> bool:
        listed = query.get("prefix", [""])[0]
        return method == "GET" and path.strip("/") == bucket and listed.startswith(key)

    return failing
