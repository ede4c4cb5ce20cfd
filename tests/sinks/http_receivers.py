"""Small real HTTP receivers on loopback with the semantics of the Splunk
HTTP Event Collector and the Datadog logs intake."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                status, body = outer.handle(
                    self.path, dict(self.headers.items()), self.rfile.read(n)
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class HecReceiver(_Server):
    """POST /services/collector/event with `Authorization: Splunk <token>`,
    stacked JSON events, HEC codes; indexer acknowledgement per channel."""

    def __init__(self, token: str, indexes: tuple[str, ...] = ("main", "audit")) -> None:
        super().__init__()
        self.token = token
        self.indexes = indexes
        self.events: list[dict[str, Any]] = []
        self.acks: dict[str, dict[int, bool]] = {}
        self.next_ack = 0
        self.busy = 0  # answer this many requests with code 9 (server busy)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        h = {k.lower(): v for k, v in headers.items()}
        auth = h.get("authorization", "")
        if not auth:
            return 401, {"text": "Token is required", "code": 2}
        if not auth.startswith("Splunk "):
            return 401, {"text": "Invalid authorization", "code": 3}
        if auth[len("Splunk ") :] != self.token:
            return 403, {"text": "Invalid token", "code": 4}
        channel = h.get("x-splunk-request-channel")
        if path == "/services/collector/ack":
            if not channel:
                return 400, {"text": "Data channel is missing", "code": 10}
            asked = json.loads(body)["acks"]
            known = self.acks.get(channel, {})
            return 200, {"acks": {str(a): known.get(a, False) for a in asked}}
        if path not in ("/services/collector/event", "/services/collector"):
            return 404, {"text": "The requested URL was not found on this server.", "code": 404}
        with self.lock:
            if self.busy:
                self.busy -= 1
                return 503, {"text": "Server is busy", "code": 9}
        dec = json.JSONDecoder()
        text = body.decode()
        pos, parsed = 0, []
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, pos = dec.raw_decode(text, pos)
            except ValueError:
                return 400, {"text": "Invalid data format", "code": 6}
            if "event" not in obj:
                return 400, {"text": "Event field is required", "code": 12}
            if obj.get("index", "main") not in self.indexes:
                return 400, {"text": "Incorrect index", "code": 7}
            parsed.append(obj)
        if not parsed:
            return 400, {"text": "No data", "code": 5}
        with self.lock:
            self.events.extend(parsed)
            if channel:
                self.next_ack += 1
                self.acks.setdefault(channel, {})[self.next_ack] = True
                return 200, {"text": "Success", "code": 0, "ackId": self.next_ack}
        return 200, {"text": "Success", "code": 0}


class DatadogReceiver(_Server):
    """POST /api/v2/logs: DD-API-KEY, gzip, at most 1,000 logs and 5 MB
    uncompressed per request (413/400 beyond), 202 when accepted."""

    MAX_LOGS = 1_000
    MAX_BYTES = 5 * 1024 * 1024

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.logs: list[dict[str, Any]] = []
        self.requests: list[tuple[int, int]] = []  # (uncompressed bytes, logs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2/logs"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        h = {k.lower(): v for k, v in headers.items()}
        if path != "/api/v2/logs":
            return 404, {"errors": ["not found"]}
        if h.get("dd-api-key") != self.key:
            return 403, {"errors": [{"status": "403", "title": "Forbidden"}]}
        if h.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if len(body) > self.MAX_BYTES:
            return 413, {"errors": ["payload too large"]}
        logs = json.loads(body)
        if not isinstance(logs, list) or len(logs) > self.MAX_LOGS:
            return 400, {"errors": ["too many logs in one request"]}
        with self.lock:
            self.requests.append((len(body), len(logs)))
            self.logs.extend(logs)
        return 202, {}
