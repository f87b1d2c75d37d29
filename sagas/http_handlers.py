"""HTTP step handlers (CONTRACT.md section 3): POST the step to a service and read its answer.

The engine POSTs `{"saga_id", "correlation_id", "step", "kind", "context", "attempt"}` as JSON
with the header `Idempotency-Key` (the same on every attempt of the call). A 2xx JSON object is
merged into the saga's context; a 4xx (and a 3xx: redirects are never followed) fails the
attempt for good; a 5xx, a timeout or a broken connection fails it to be retried.

Only URLs that `definitions.http_url_problem` accepts are called: the check runs again here, at
call time, on the URL as httpx parses it, because the allowlist may have changed since the
definition was saved. The answer is read as a stream and cut off at `MAX_RESPONSE_BYTES`. Every
outcome carries `http_status` and `response_excerpt` (the first `EXCERPT_CHARS` characters of the
body), which `execution.py` passes on to the attempt row.
"""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
from django.conf import settings

from . import definitions
from .handlers import PermanentError, StepCall

MAX_RESPONSE_BYTES = 1024 * 1024
EXCERPT_CHARS = 2000


class HttpStepError(Exception):
    """A failure another attempt may cure: 5xx, a timeout, a connection refused or reset."""

    def __init__(self, message: str, http_status: int | None = None, response_excerpt: str = ""):
        super().__init__(message)
        self.http_status = http_status
        self.response_excerpt = response_excerpt


class HttpStepRefused(PermanentError):
    """A failure that retrying cannot cure: 4xx, a redirect, a host not allowed, an answer that is not an object."""

    def __init__(self, message: str, http_status: int | None = None, response_excerpt: str = ""):
        super().__init__(message)
        self.http_status = http_status
        self.response_excerpt = response_excerpt


class HttpResult(dict):
    """A 2xx answer's JSON object (merged into the context), with the status code and body excerpt."""

    def __init__(self, data: dict, http_status: int, response_excerpt: str):
        super().__init__(data)
        self.http_status = http_status
        self.response_excerpt = response_excerpt


_client: httpx.Client | None = None
_client_pid: int | None = None
_client_lock = threading.Lock()


def client() -> httpx.Client:
    """One client per process, shared by its threads, for connection reuse (a forked child makes its own)."""
    global _client, _client_pid
    with _client_lock:
        if _client is None or _client_pid != os.getpid():
            # trust_env=False: no proxy or .netrc from the environment may redirect or decorate calls.
            _client = httpx.Client(follow_redirects=False, trust_env=False,
                                   headers={"User-Agent": "sagaboard", "Accept": "application/json",
                                            "Accept-Encoding": "identity"},
                                   limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
            _client_pid = os.getpid()
        return _client


def timeout_seconds() -> float:
    return float(settings.SAGABOARD_HTTP_TIMEOUT_SECONDS)


def call_http(url: str, step: StepCall) -> HttpResult:
    """Make one HTTP call of a step; returns the answer's object or raises HttpStepError / HttpStepRefused."""
    if problem := definitions.http_url_problem(url):
        raise HttpStepRefused(f"refused to call {url}: {problem}")
    body = {"saga_id": step.saga_id, "correlation_id": step.correlation_id, "step": step.step_name,
            "kind": step.kind, "context": dict(step.context), "attempt": step.attempt}
    seconds = timeout_seconds()
    deadline = time.monotonic() + seconds
    try:
        with client().stream("POST", httpx.URL(url), json=body, headers={"Idempotency-Key": step.idempotency_key},
                             timeout=seconds) as response:
            content, cut_off = _read_capped(response, deadline)
            status, location = response.status_code, response.headers.get("location", "")
    except httpx.TimeoutException as exc:
        raise HttpStepError(f"POST {url} timed out after {seconds:g} s ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise HttpStepError(f"POST {url} failed: {type(exc).__name__}: {exc}") from None
    excerpt = content[:EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    return _judge(url, status, location, content, cut_off, excerpt)


def _read_capped(response: httpx.Response, deadline: float) -> tuple[bytes, bool]:
    """The body, at most MAX_RESPONSE_BYTES of it, and whether it was cut off; stops at the deadline."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        # Keep only enough for the excerpt and stop reading.
        first = next(response.iter_bytes(EXCERPT_CHARS * 4), b"")
        return first, True
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            return bytes(body[:MAX_RESPONSE_BYTES]), True
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the answer took too long to arrive")
    return bytes(body), False


def _judge(url: str, status: int, location: str, content: bytes, cut_off: bool, excerpt: str) -> HttpResult:
    details = {"http_status": status, "response_excerpt": excerpt}
    if 200 <= status < 300:
        if cut_off:
            raise HttpStepRefused(f"POST {url} answered {status} with more than {MAX_RESPONSE_BYTES} bytes", **details)
        if not content.strip():
            return HttpResult({}, status, excerpt)
        try:
            data = json.loads(content)
        except ValueError:
            raise HttpStepRefused(f"POST {url} answered {status} with a body that is not JSON", **details) from None
        if not isinstance(data, dict):
            raise HttpStepRefused(f"POST {url} answered {status} with JSON {type(data).__name__}, not an object",
                                  **details)
        return HttpResult(data, status, excerpt)
    summary = " ".join(excerpt[:300].split())
    if 300 <= status < 400:
        raise HttpStepRefused(f"POST {url} answered {status} (redirect to {location or '?'}): redirects are not "
                              f"followed", **details)
    if 400 <= status < 500:
        raise HttpStepRefused(f"POST {url} answered {status}: {summary}", **details)
    raise HttpStepError(f"POST {url} answered {status}: {summary}", **details)
