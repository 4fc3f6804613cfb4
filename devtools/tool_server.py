"""A tenant's tool server on loopback, for tests and benchmarks: it answers the platform's tool
requests as a real HTTP server does (JSON, an error status, a slow answer or none at all) and
keeps every request it got, headers and body, so its signature can be checked."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    """How one path answers: `body` (JSON-encoded unless bytes) with `status` after `delay`
    seconds; `answer` (a function of the request's JSON) replaces `body` when set."""

    body: object = field(default_factory=dict)
    status: int = 200
    delay: float = 0.0
    answer: object = None


@dataclass
class ToolRequest:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class ToolServer:
    """`route("/book", body={...})`, then point an HttpTool at `url("/book")`."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[ToolRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def route(self, path: str, **how: object) -> None:
        self.routes[path] = Route(**how)

    def url(self, path: str) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def received(self, path: str | None = None) -> list[ToolRequest]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def reset(self) -> None:
        with self._lock:
            self.routes.clear()
            self.requests.clear()

    def start(self) -> ToolServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="tool-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tools = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = ToolRequest(
                    path=self.path,
                    method=self.command,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                )
                with tools._lock:
                    tools.requests.append(request)
                route = tools.routes.get(
                    self.path, Route(body={"error": "no such tool"}, status=404)
                )
                time.sleep(route.delay)
                body = route.answer(request.json()) if callable(route.answer) else route.body
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the platform gave up waiting
                    pass

            do_GET = do_PUT = do_PATCH = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
