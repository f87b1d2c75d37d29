"""HTTP step handlers against a real local HTTP server: one call, then whole sagas through a real worker."""

from __future__ import annotations

import pytest

from sagas import definitions
from sagas.api.serializers import DefinitionSerializer
from sagas.handlers import PermanentError, StepCall
from sagas.http_handlers import EXCERPT_CHARS, HttpStepError, HttpStepRefused, call_http
from tests.http_sagas import attempts, start, wait_resting
from tests.http_service import Answer, HttpService


@pytest.fixture
def service():
    server = HttpService()
    yield server
    server.close()


@pytest.fixture
def allow_local(settings):
    settings.SAGABOARD_HTTP_ALLOWLIST = ["127.0.0.1"]
    settings.SAGABOARD_HTTP_TIMEOUT_SECONDS = 5
    return settings


def step_call(attempt: int = 1, step_name: str = "charge_payment", **context) -> StepCall:
    return StepCall.make(saga_id="0b5f3c1e-0000-4000-8000-000000000001", correlation_id="order-1", step_name=step_name,
                         kind="action", attempt=attempt,
                         idempotency_key=f"saga:0b5f3c1e-0000-4000-8000-000000000001:{step_name}:action",
                         context=dict(context))


# --- one call ----------------------------------------------------------------------------------

def test_it_posts_the_step_with_its_idempotency_key_and_returns_the_answer(service, allow_local):
    url = service.script("/charge", (200, {"payment_id": "p-1"}))
    result = call_http(url, step_call(amount=12))
    assert result == {"payment_id": "p-1"}
    assert (result.http_status, result.response_excerpt) == (200, '{"payment_id": "p-1"}')
    [request] = service.requests_to("/charge")
    assert request.headers["Idempotency-Key"] == "saga:0b5f3c1e-0000-4000-8000-000000000001:charge_payment:action"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == {"saga_id": "0b5f3c1e-0000-4000-8000-000000000001", "correlation_id": "order-1",
                            "step": "charge_payment", "kind": "action", "context": {"amount": 12}, "attempt": 1}


def test_an_empty_2xx_answer_succeeds_with_nothing_to_merge(service, allow_local):
    url = service.script("/noop", Answer(204, raw=b""))
    assert call_http(url, step_call()) == {}


def test_a_4xx_answer_is_permanent_and_keeps_status_and_excerpt(service, allow_local):
    url = service.script("/charge", (400, {"error": "card declined"}))
    with pytest.raises(HttpStepRefused) as failure:
        call_http(url, step_call())
    assert isinstance(failure.value, PermanentError)
    assert failure.value.http_status == 400
    assert "card declined" in failure.value.response_excerpt and "card declined" in str(failure.value)


def test_a_5xx_answer_is_a_retryable_failure(service, allow_local):
    url = service.script("/charge", (503, {"error": "busy"}))
    with pytest.raises(HttpStepError) as failure:
        call_http(url, step_call())
    assert not isinstance(failure.value, PermanentError)
    assert (failure.value.http_status, failure.value.response_excerpt) == (503, '{"error": "busy"}')


def test_a_slow_answer_times_out_as_a_retryable_failure(service, allow_local):
    allow_local.SAGABOARD_HTTP_TIMEOUT_SECONDS = 0.3
    url = service.script("/slow", Answer(200, {"late": True}, delay=1.5))
    with pytest.raises(HttpStepError, match="timed out") as failure:
        call_http(url, step_call())
    assert not isinstance(failure.value, PermanentError)
    assert failure.value.http_status is None


def test_an_answer_that_is_not_a_json_object_is_permanent(service, allow_local):
    url = service.script("/list", (200, [1, 2]))
    with pytest.raises(HttpStepRefused, match="not an object"):
        call_http(url, step_call())
    url = service.script("/html", Answer(200, raw=b"<html>oops</html>"))
    with pytest.raises(HttpStepRefused, match="not JSON") as failure:
        call_http(url, step_call())
    assert failure.value.response_excerpt == "<html>oops</html>"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_answer_over_one_mebibyte_is_cut_off_and_refused(service, allow_local, chunked):
    huge = b'{"blob": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    url = service.script("/huge", Answer(200, raw=huge, chunked=chunked))
    with pytest.raises(HttpStepRefused, match="more than 1048576 bytes") as failure:
        call_http(url, step_call())
    assert failure.value.http_status == 200
    assert len(failure.value.response_excerpt) == EXCERPT_CHARS
    assert failure.value.response_excerpt.startswith('{"blob": "xxx')


def test_the_excerpt_of_a_long_error_is_bounded(service, allow_local):
    url = service.script("/error", Answer(500, raw=b"E" * 50_000))
    with pytest.raises(HttpStepError) as failure:
        call_http(url, step_call())
    assert failure.value.response_excerpt == "E" * EXCERPT_CHARS


def test_a_host_outside_the_allowlist_is_refused_at_call_time_without_a_request(service, settings):
    settings.SAGABOARD_HTTP_ALLOWLIST = ["payments.example.com"]
    url = service.script("/charge", (200, {"payment_id": "p-1"}))
    with pytest.raises(HttpStepRefused, match="not in SAGABOARD_HTTP_ALLOWLIST"):
        call_http(url, step_call())
    assert service.requests_to("/charge") == []


def test_an_allowlist_entry_with_a_port_allows_that_port_only(service, settings):
    settings.SAGABOARD_HTTP_ALLOWLIST = [f"127.0.0.1:{service.port + 1}"]
    url = service.script("/charge", (200, {}))
    with pytest.raises(HttpStepRefused, match="not in SAGABOARD_HTTP_ALLOWLIST"):
        call_http(url, step_call())
    settings.SAGABOARD_HTTP_ALLOWLIST = [f"127.0.0.1:{service.port}"]
    assert call_http(url, step_call()) == {}


def test_a_redirect_is_not_followed_to_another_host(service, allow_local):
    other = HttpService()
    try:
        target = other.script("/internal", (200, {"secret": 1}))
        url = service.script("/charge", Answer(302, {}, headers={"Location": target.replace("127.0.0.1", "localhost")}))
        with pytest.raises(HttpStepRefused, match="redirects are not followed") as failure:
            call_http(url, step_call())
        assert failure.value.http_status == 302
        assert other.requests_to("/internal") == []
    finally:
        other.close()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1@evil.example/charge",  # the allowed host is only the user name
    "http://evil.example\\@127.0.0.1/charge",  # parsers disagree on the host: credentials refused outright
    "http://127.0.0.1.evil.example/charge",
    "http://2130706433/charge",  # 127.0.0.1 spelled as a number is not the allowed name
    "ftp://127.0.0.1/charge",
])
def test_urls_that_disguise_another_host_are_refused(allow_local, url):
    assert definitions.http_url_problem(url) is not None
    with pytest.raises(PermanentError):
        call_http(url, step_call())


def test_sagaboards_own_demo_services_are_allowed_and_nothing_else_of_it(settings):
    settings.SAGABOARD_HTTP_ALLOWLIST = []
    settings.SAGABOARD_PUBLIC_URL = "http://127.0.0.1:8000"
    assert definitions.http_url_problem("http://127.0.0.1:8000/demo/services/payment/charge/") is None
    assert definitions.http_url_problem("http://127.0.0.1:8000/api/sagas/") is not None
    assert definitions.http_url_problem("http://127.0.0.1:8000/demo/services/../../api/sagas/") is not None
    assert definitions.http_url_problem("http://127.0.0.1:8001/demo/services/payment/charge/") is not None


# --- validation --------------------------------------------------------------------------------

def http_definition(name: str, action: str, compensation: str | None = None, **step) -> dict:
    return {"name": name, "steps": [
        {"name": "reserve_inventory", "action": "demo.inventory.reserve", "compensation": "demo.inventory.release",
         "max_attempts": 1, "backoff_seconds": 0},
        {"name": "charge_payment", "action": action, "compensation": compensation, "max_attempts": 3,
         "backoff_seconds": 0.05, "timeout_seconds": 5, **step},
    ]}


def test_a_definition_calling_a_host_outside_the_allowlist_is_refused(settings):
    settings.SAGABOARD_HTTP_ALLOWLIST = ["payments.internal"]
    serializer = DefinitionSerializer(data=http_definition("http-order", "http://evil.example/charge",
                                                           compensation="http://payments.internal/refund"))
    assert not serializer.is_valid()
    errors = serializer.errors["steps"]
    assert errors[0] == {}
    assert "'evil.example' is not in SAGABOARD_HTTP_ALLOWLIST" in errors[1]["action"][0]
    assert "compensation" not in errors[1]


# --- whole sagas through a real Celery worker --------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_http_saga_completes_with_the_answer_merged_into_its_context(celery_worker_process, service, allow_local):
    url = service.script("/charge", (200, {"payment_id": "p-42"}))
    saga = wait_resting(start(http_definition("http-happy", url), {"amount": 9}, "http-happy-1"),
                        celery_worker_process)
    assert saga.status == "completed"
    assert saga.context["payment_id"] == "p-42" and saga.context["amount"] == 9
    assert attempts(saga, "charge_payment") == [(1, "succeeded", 200, '{"payment_id": "p-42"}')]
    assert attempts(saga, "reserve_inventory") == [(1, "succeeded", None, "")]
    [request] = service.requests_to("/charge")
    assert request.body["saga_id"] == str(saga.pk) and request.body["context"]["reservation_id"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_503_is_retried_with_the_same_idempotency_key_until_it_succeeds(celery_worker_process, service, allow_local):
    url = service.script("/charge", (503, {"error": "busy"}), (503, {"error": "busy"}), (200, {"payment_id": "p-7"}))
    saga = wait_resting(start(http_definition("http-flaky", url), {}, "http-flaky-1"), celery_worker_process)
    assert saga.status == "completed"
    assert attempts(saga, "charge_payment") == [(1, "failed", 503, '{"error": "busy"}'),
                                                (2, "failed", 503, '{"error": "busy"}'),
                                                (3, "succeeded", 200, '{"payment_id": "p-7"}')]
    sent = service.requests_to("/charge")
    assert [r.body["attempt"] for r in sent] == [1, 2, 3]
    assert {r.headers["Idempotency-Key"] for r in sent} == {f"saga:{saga.pk}:charge_payment:action"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_400_is_not_retried_and_the_saga_compensates(celery_worker_process, service, allow_local):
    url = service.script("/charge", (400, {"error": "card declined"}))
    saga = wait_resting(start(http_definition("http-declined", url), {}, "http-declined-1"), celery_worker_process)
    assert saga.status == "compensated"
    assert attempts(saga, "charge_payment") == [(1, "failed", 400, '{"error": "card declined"}')]
    assert len(service.requests_to("/charge")) == 1
    assert "card declined" in saga.error
    assert dict(saga.steps.values_list("name", "status")) == {"reserve_inventory": "compensated",
                                                              "charge_payment": "failed"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_call_past_the_step_timeout_is_retried(celery_worker_process, service, allow_local):
    url = service.script("/charge", Answer(200, {"late": True}, delay=3), Answer(200, {"payment_id": "p-9"}))
    saga = wait_resting(start(http_definition("http-slow", url, timeout_seconds=0.5), {}, "http-slow-1"),
                        celery_worker_process)
    assert saga.status == "completed"
    rows = attempts(saga, "charge_payment")
    assert [(number, status) for number, status, *_ in rows] == [(1, "failed"), (2, "succeeded")]
    assert "timed out" in saga.attempts.get(step__name="charge_payment", number=1).error
    assert saga.context["payment_id"] == "p-9" and "late" not in saga.context


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_host_removed_from_the_allowlist_is_refused_when_the_worker_calls_it(celery_worker_process, service,
                                                                               allow_local):
    # Saved while the allowlist had it (the test process), called by a worker whose allowlist has
    # only 127.0.0.1: "localhost" is another name and is refused at call time.
    allow_local.SAGABOARD_HTTP_ALLOWLIST = ["127.0.0.1", "localhost"]
    url = service.script("/charge", (200, {"payment_id": "p-1"})).replace("127.0.0.1", "localhost")
    saga = wait_resting(start(http_definition("http-refused", url), {}, "http-refused-1"), celery_worker_process)
    assert saga.status == "compensated"
    [attempt] = saga.attempts.filter(step__name="charge_payment")
    assert "not in SAGABOARD_HTTP_ALLOWLIST" in attempt.error
    assert service.requests_to("/charge") == []
