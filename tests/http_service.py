"""A real HTTP service for the tests of HTTP step handlers: http.server in a thread, scripted per path.

`service.script("/charge", (503, {...}), (200, {...}))` answers the first call of /charge with 503
and every later one with 200; each answer may carry a delay, headers and a raw body. Every request
received is kept (path, headers, JSON body) so a test can assert what the engine sent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    status: int = 200
    body: object = field(default_factory=dict)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is instead of the JSON of `body`
    chunked: bool = False  # no Content-Length: the body arrives in chunks


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """Quiet about clients that hang up (a capped answer, a timed-out call); loud about the rest."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class HttpService:
    def __init__(self, host: str = "127.0.0.1"):
        self.answers: dict[str, list[Answer]] = {}
        self.calls: dict[str, int] = {}
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.server = _Server((host, 0), self._handler_class())
        self.host, self.port = host, self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="http-service", daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def script(self, path: str, *answers: Answer | tuple) -> str:
        self.answers[path] = [a if isinstance(a, Answer) else Answer(*a) for a in answers]
        return self.url(path)

    def requests_to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, path: str) -> Answer:
        with self.lock:
            number = self.calls.get(path, 0)
            self.calls[path] = number + 1
        answers = self.answers.get(path) or [Answer(404, {"error": "no such path"})]
        return answers[min(number, len(answers) - 1)]

    def _handler_class(self):
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                with service.lock:
                    service.received.append(Received(self.path, dict(self.headers), body))
                answer = service._answer(self.path)
                if answer.delay:
                    time.sleep(answer.delay)
                payload = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    if answer.chunked:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for start in range(0, len(payload), 65536):
                            chunk = payload[start:start + 65536]
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a capped or timed-out answer)

        return Handler
