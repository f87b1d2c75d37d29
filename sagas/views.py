"""The dashboard pages: small functions that gather rows (a fixed number of queries) and render.

Every page needs a login and the viewer role. A live region of a page is a partial template
(`sagas/_*.html`); `?part=<region>` answers that partial alone, which the page's script fetches
again when the websocket says something changed.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import graphviz
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Avg, Count, F, Prefetch, Q
from django.db.models.functions import Coalesce, TruncMinute
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from . import choreography_graph as graph  # graph: draws either kind of definition
from . import roles, services
from .api.events import flow_json
from .api.pagination import CappedCountPaginator
from .filters import filter_sagas
from .machine import VALID_ACTIONS, SagaStatus
from .models import Alert, Definition, DefinitionStep, Saga, SagaEvent, SagaStep, StepAttempt

log = logging.getLogger(__name__)
viewer_required = permission_required(roles.VIEW, raise_exception=True)
THROUGHPUT_MINUTES = 15
EVENTS_SHOWN = 500  # the timeline shows a saga's latest events; the API pages through all of them
STATS_SAGAS = 5000  # per-step statistics cover the latest sagas of a definition, so they stay cheap
FINAL = ("completed", "compensated", "failed")
ACTION_HELP = {
    "retry": "Run the stuck step again (the failed action or compensation) and carry on.",
    "compensate": "Stop going forward and undo what succeeded, in reverse order.",
    "resolve": "You did the stuck step by hand: mark it resolved and carry on in the same direction.",
}


def page(view):
    return login_required(viewer_required(view))


def render_page(request, template: str, context: dict, parts: dict[str, str] | None = None):
    """The page, or with `?part=<name>` only that live region's partial template."""
    part = request.GET.get("part")
    if part:
        if not parts or part not in parts:
            raise Http404(f"no live region {part!r} on this page")
        return render(request, parts[part], context)
    return render(request, template, context)


# --- overview ----------------------------------------------------------------------------------

@page
def overview(request):
    counts = dict(Saga.objects.order_by().values_list("status").annotate(n=Count("pk")))
    context = {
        "counts": [(status.value, counts.get(status.value, 0)) for status in SagaStatus],
        "total": sum(counts.values()),
        "throughput": throughput(timezone.now()),
        "critical": Alert.objects.filter(open=True, severity=Alert.Severity.CRITICAL)
                                 .select_related("saga").order_by("-created_at", "-id")[:50],
    }
    return render_page(request, "sagas/overview.html", context, {"live": "sagas/_overview_live.html"})


def throughput(now) -> dict:
    """Sagas finished per minute over the last minutes, by final status, in one query.

    A `failed` saga is not terminal (an operator may still act) and has no finished_at: it counts
    in the minute it last changed.
    """
    first = (now - timedelta(minutes=THROUGHPUT_MINUTES - 1)).replace(second=0, microsecond=0)
    rows = (Saga.objects.filter(Q(finished_at__gte=first) | Q(status="failed", updated_at__gte=first)).order_by()
            .annotate(minute=TruncMinute(Coalesce("finished_at", "updated_at")))
            .values_list("minute", "status").annotate(n=Count("pk")))
    per_minute: dict = {}
    for minute, status, n in rows:
        per_minute.setdefault(minute.replace(tzinfo=None), {})[status] = n
    minutes = []
    for i in range(THROUGHPUT_MINUTES):
        minute = first + timedelta(minutes=i)
        counts = per_minute.get(minute.replace(tzinfo=None), {})
        minutes.append({"at": minute, "counts": [(s, counts.get(s, 0)) for s in FINAL],
                        "total": sum(counts.values())})
    top = max([m["total"] for m in minutes] + [1])
    for m in minutes:
        m["bars"] = [(s, n, round(100 * n / top)) for s, n in m["counts"] if n]
    total = sum(m["total"] for m in minutes)
    return {"minutes": minutes, "total": total, "per_minute": round(total / THROUGHPUT_MINUTES, 1), "top": top,
            "span": THROUGHPUT_MINUTES}


# --- sagas -------------------------------------------------------------------------------------

@page
def saga_list(request):
    params = request.GET
    sagas, problems_by_field = filter_sagas(Saga.objects.all(), params)
    problems = [problem for found in problems_by_field.values() for problem in found]
    pages = CappedCountPaginator(sagas.order_by("-created_at", "-pk"), 50)
    page_obj = pages.get_page(params.get("page"))
    query = params.copy()
    query.pop("page", None)
    return render(request, "sagas/saga_list.html", {
        "page": page_obj, "sagas": page_obj.object_list, "problems": problems, "filters": params,
        "query": query.urlencode(), "statuses": [s.value for s in SagaStatus],
        "definitions": Definition.objects.order_by("name").values_list("name", flat=True).distinct(),
    })


@page
def saga_detail(request, saga_id):
    attempts = Prefetch("attempts", StepAttempt.objects.order_by("started_at", "id"))
    steps = Prefetch("steps", SagaStep.objects.order_by("index").prefetch_related(attempts))
    saga = get_object_or_404(Saga.objects.select_related("definition").prefetch_related(steps), pk=saga_id)
    saga_steps = list(saga.steps.all())
    for step in saga_steps:
        for attempt in step.attempts.all():
            attempt.duration = duration(attempt.started_at, attempt.finished_at)
    events = list(SagaEvent.objects.filter(saga=saga).order_by("-seq")[:EVENTS_SHOWN])[::-1]
    for event in events:
        event.data_text = json.dumps(event.data, ensure_ascii=False)
    actions = [{"name": action.value, "help": ACTION_HELP[action.value], "valid_for": " ".join(sorted(valid)),
                "valid": saga.status in valid} for action, valid in VALID_ACTIONS.items()]
    flow = saga_flow(saga) if graph.is_choreography(saga.definition) else None
    return render_page(request, "sagas/saga_detail.html", {
        "saga": saga, "steps": saga_steps, "events": events, "events_hidden": saga.event_seq - len(events),
        "actions": actions, "any_action": any(a["valid"] for a in actions),
        "svg": drawn(graph.saga_svg, saga, saga_steps),
        "context_json": json.dumps(saga.context, indent=2, sort_keys=True, ensure_ascii=False),
        "flow": flow,
    }, {"flow": "sagas/_flow.html"} if flow else None)


FLOW_STATES = {  # a flow event's state on the saga page (its css class) and how the page says it
    "observed": "observed", "held": "held: arrived early", "waiting": "waiting for it",
    "missing": "missing", "failure": "only on failure", "unpublished": "not published",
}


def saga_flow(saga: Saga) -> dict | None:
    """A choreography's events observed over the expected ones: what `GET /api/sagas/<id>/flow/` answers,
    each event given the one state the page shows (four queries, whatever the length of the log)."""
    state = services.flow_state(saga.pk)
    if state is None:
        return None
    flow = flow_json(saga, state)
    on_failure = {f.emits_on_failure for f in state.flows if f.emits_on_failure}
    for event in flow["events"]:
        name = event["type"]
        event["state"] = ("observed" if event["observed"] else "held" if name in flow["held"]
                          else "waiting" if name in flow["waiting_for"] else "missing" if name in flow["missing"]
                          else "failure" if name in on_failure and saga.status not in FINAL else "unpublished")
        event["label"] = FLOW_STATES[event["state"]]
        event["on_failure"] = name in on_failure
    return flow


def drawn(draw, *args) -> str | None:
    """The graph, or None when graphviz's `dot` cannot run: the rest of the page still helps."""
    try:
        return draw(*args)
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError):
        log.exception("cannot draw the flow graph")
        return None


def duration(start, end) -> str:
    if not start or not end:
        return ""
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


# --- definitions -------------------------------------------------------------------------------

@page
def definition_list(request):
    newest: dict[str, Definition] = {}
    versions: dict[str, int] = {}
    for definition in Definition.objects.order_by("name", "-version").prefetch_related("steps"):
        newest.setdefault(definition.name, definition)
        versions[definition.name] = versions.get(definition.name, 0) + 1
    counts: dict[str, dict[str, int]] = {}
    for name, status, n in Saga.objects.order_by().values_list("definition_name", "status").annotate(n=Count("pk")):
        counts.setdefault(name, {})[status] = n
    rows = [{"definition": d, "versions": versions[d.name], "steps": len(d.steps.all()),
             "counts": [(s.value, counts.get(d.name, {}).get(s.value, 0)) for s in SagaStatus],
             "total": sum(counts.get(d.name, {}).values())} for d in newest.values()]
    return render(request, "sagas/definition_list.html", {"rows": rows})


@page
def definition_detail(request, name):
    versions = list(Definition.objects.filter(name=name).order_by("-version")
                    .prefetch_related(Prefetch("steps", DefinitionStep.objects.order_by("index"))))
    if not versions:
        raise Http404(f"no definition named {name!r}")
    wanted = request.GET.get("version")
    definition = next((d for d in versions if str(d.version) == wanted), versions[0])
    steps = list(definition.steps.all())
    stats = step_statistics(name)
    return render(request, "sagas/definition_detail.html", {
        "definition": definition, "versions": versions, "svg": drawn(graph.definition_svg, definition),
        "rows": [{"step": step, **stats.get(step.name, {})} for step in steps], "stats_sagas": STATS_SAGAS,
    })


def step_statistics(name: str) -> dict[str, dict]:
    """Per step name, over the latest sagas of the definition: action attempts, success rate, mean
    duration, failures, and compensations; two aggregate queries whatever the number of rows."""
    latest = Saga.objects.filter(definition_name=name).order_by("-created_at").values("pk")[:STATS_SAGAS]
    attempts = (StepAttempt.objects.filter(saga_id__in=latest).order_by()
                .values_list("step__name", "kind")
                .annotate(total=Count("pk"), ok=Count("pk", filter=Q(status="succeeded")),
                          failed=Count("pk", filter=Q(status="failed")),
                          mean=Avg(F("finished_at") - F("started_at"), filter=Q(finished_at__isnull=False))))
    stats: dict[str, dict] = {}
    for step_name, kind, total, ok, failed, mean in attempts:
        row = stats.setdefault(step_name, {})
        finished = ok + failed
        row[kind] = {"total": total, "ok": ok, "failed": failed,
                     "rate": f"{100 * ok / finished:.1f} %" if finished else "–",
                     "mean": _mean(mean)}
    outcomes = (SagaStep.objects.filter(saga_id__in=latest).order_by()
                .values_list("name", "status").annotate(n=Count("pk")))
    for step_name, status, n in outcomes:
        stats.setdefault(step_name, {}).setdefault("outcomes", {})[status] = n
    return stats


def _mean(value) -> str:
    if value is None:
        return "–"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value) / 1e6  # SQLite: µs
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


# --- alerts ------------------------------------------------------------------------------------

@page
def alert_list(request):
    show = request.GET.get("show", "open")
    alerts = Alert.objects.select_related("saga", "acknowledged_by").order_by("-created_at", "-id")
    if show == "open":
        alerts = alerts.filter(open=True)
    pages = CappedCountPaginator(alerts, 50)
    page_obj = pages.get_page(request.GET.get("page"))
    return render(request, "sagas/alert_list.html", {"page": page_obj, "alerts": page_obj.object_list, "show": show})
