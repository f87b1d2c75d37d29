"""A saga's record as the services see it: load it with its steps (and a choreography's flow),
write a transition with a conditional update on `version`, and enqueue what is due after commit.

Shared by the other service modules; nothing outside `sagas.services` calls it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from .. import alerts, choreography, events, machine
from ..machine import Kind, SagaStatus
from ..models import Definition, Saga, SagaEvent, SagaStep, StepAttempt
from .sql import Batch, RowsMissed, read_saga

CONFLICT_RETRIES = 20
# Choreography: the log entry of an event received (from outside, or the start event), before it is applied.
RECEIVED = "EventReceived"


class Conflict(Exception):
    """Someone else changed the saga first (its version moved); nothing was written."""


class NotAllowed(Exception):
    """The request does not fit the saga's state (an invalid operator action); nothing changed."""


@dataclass
class Loaded:
    saga: Saga
    steps: list[SagaStep]
    state: machine.SagaState = field(init=False)
    # Choreography sagas only (see load_flow): the flow's state, and the events received, in order.
    flow: choreography.FlowState | None = field(init=False, default=None)
    received: list[tuple[str, dict]] = field(init=False, default_factory=list)

    @property
    def rules(self):
        """The rules that move this saga: `machine` (orchestration) or `choreography`, same interface."""
        return machine if self.flow is None else choreography

    @property
    def rule_state(self):
        return self.state if self.flow is None else self.flow

    def __post_init__(self) -> None:
        self.state = machine.SagaState(
            status=SagaStatus(self.saga.status),
            on_failure=machine.OnFailure(self.saga.on_failure),
            steps=tuple(
                machine.StepState(
                    name=step.name,
                    status=machine.StepStatus(step.status),
                    has_compensation=bool(step.compensation),
                    compensate_on_failure=step.compensate_on_failure,
                    resolved_kind=Kind(step.resolved_kind) if step.resolved_kind else None,
                )
                for step in self.steps
            ),
        )


def load(saga_id, before: Batch | None = None) -> Loaded | None:
    """The saga with its steps; `before`: writes to make first, in the same round trip."""
    found = read_saga(saga_id, before)
    if found is None:
        return None
    saga, mode, steps = found
    loaded = Loaded(saga, steps)
    if mode == Definition.Mode.CHOREOGRAPHY:
        load_flow(loaded)
    return loaded


def load_flow(loaded: Loaded) -> None:
    """A choreography's state: each step's flow, and from the event log what was published and received."""
    flows = tuple(choreography.Flow(s.on, s.emits, s.emits_on_failure, tuple(s.compensate_on or ()))
                  for s in loaded.steps)
    names = {e for f in flows for e in (f.on, f.emits, f.emits_on_failure, *f.compensate_on) if e}
    rows = SagaEvent.objects.filter(saga_id=loaded.saga.pk).filter(
        Q(type__in=names) | Q(type=RECEIVED) | Q(type="OperatorAction", data__action="compensate"),
    ).order_by("seq").values_list("type", "data")
    published, rollback = set(), False
    for event_type, data in rows:
        if event_type == RECEIVED:
            loaded.received.append((data.get("type", ""), data))
        elif event_type == "OperatorAction":
            rollback = True
        else:
            published.add(event_type)
    loaded.flow = choreography.FlowState(loaded.state, flows, frozenset(published), rollback)


def attempt_counter(kind: Kind) -> str:
    return "action_attempts" if kind == Kind.ACTION else "compensation_attempts"


def attempts_made(step: SagaStep, kind: Kind) -> int:
    return getattr(step, attempt_counter(kind))


def write(loaded: Loaded, transition: machine.Transition, now: datetime, *,
          step_fields: dict[int, dict] | None = None, saga_fields: dict | None = None,
          event_data: dict | list[dict] | None = None, data_by_type: dict[str, dict] | None = None,
          attempts: Iterable[StepAttempt] = (), new_attempts: Iterable[StepAttempt] = (),
          before: Batch | None = None) -> None:
    """Write a transition: the saga (conditionally on its version), changed steps, events, alerts.

    `event_data` is the data of the events about the call or action being written, one dict for
    all of them or one per event of `transition`. `data_by_type` gives the data of events of those
    types (choreography's received and published events). `new_attempts` are attempt rows to
    insert with it (they get their pk); `attempts` are attempt rows as this transaction left them.
    Both go to the live update, so that publishing need not read them back. `before`: writes to
    send first, with these (`Conflict` if one of them misses, as for the version check).
    """
    data_by_type = data_by_type or {}
    saga, new = loaded.saga, transition.state
    step_fields = dict(step_fields or {})
    for index, (old_step, new_step) in enumerate(zip(loaded.state.steps, new.steps, strict=True)):
        if old_step != new_step:
            step_fields.setdefault(index, {}).update(
                status=new_step.status.value, resolved_kind=new_step.resolved_kind.value if new_step.resolved_kind else "")
    fields = dict(saga_fields or {})
    fields.update(status=new.status.value, version=saga.version + 1,
                  event_seq=saga.event_seq + len(transition.events), updated_at=now,
                  current_step=current_step_name(new, transition, saga.current_step))
    if new.status in machine.TERMINAL and saga.finished_at is None:
        fields["finished_at"] = now
    if new.status == SagaStatus.COMPLETED and saga.error:
        # A failure that later attempts got past is not the state of a saga that completed: it
        # stays in the attempts and the event log, not in the saga's error banner.
        fields["error"] = ""
    each = event_data if isinstance(event_data, list) else [event_data] * len(transition.events)
    created = [
        SagaEvent(saga_id=saga.pk, seq=saga.event_seq + i, type=event.type, at=now,
                  step=None if event.step is None else new.steps[event.step].name,
                  data=data_by_type[event.type] if event.type in data_by_type else
                  data if _about_the_call(event) else {})
        for i, (event, data) in enumerate(zip(transition.events, each, strict=True), start=1)
    ]
    new_attempts = list(new_attempts)
    changes = before or Batch()
    changes.update(Saga, {"pk": saga.pk, "version": saga.version}, fields, conditional=True)
    for index, values in step_fields.items():
        changes.update(SagaStep, {"pk": loaded.steps[index].pk}, values)
    changes.insert(new_attempts, returning_pk=True)
    changes.insert(created)
    try:
        changes.run()
    except (RowsMissed, IntegrityError) as error:
        # IntegrityError too: sent together with a missed version check, the event rows can collide
        # with those of the transaction that moved the saga first.
        raise Conflict(f"saga {saga.pk} moved past version {saga.version}") from error
    for index, values in step_fields.items():
        for name, value in values.items():
            setattr(loaded.steps[index], name, value)
    old_status = saga.status
    for name, value in fields.items():
        setattr(saga, name, value)
    if old_status != new.status:
        alerts.status_changed(saga, old_status, new.status)
    events.publish_after_commit(saga, [loaded.steps[i] for i in sorted(step_fields)], created,
                                [*attempts, *new_attempts])


def _about_the_call(event: machine.Event) -> bool:
    """Whether an event concerns the call or action being written (and so carries its data); a step
    skipped on the way back had no call."""
    return (event.step is not None and event.type != "StepSkipped") or event.type == "OperatorAction"


def current_step_name(state: machine.SagaState, transition: machine.Transition, previous: str) -> str:
    if transition.work is not None:
        return state.steps[transition.work.index].name
    # Where the saga is at, or stuck: a compensation that failed is what a person must see to
    # first, before the action whose failure started the rollback.
    for status in (machine.StepStatus.RUNNING, machine.StepStatus.COMPENSATING, machine.StepStatus.COMPENSATION_FAILED,
                   machine.StepStatus.FAILED):
        index = state.index_of(status)
        if index is not None:
            return state.steps[index].name
    return "" if state.status in machine.TERMINAL else previous


def after_commit(saga: Saga, work: machine.Work, number: int, delay: float) -> None:
    saga_id = saga.pk
    transaction.on_commit(lambda: enqueue(saga_id, work, number, delay))


def enqueue(saga_id, work: machine.Work, number: int, delay: float) -> None:
    from ..tasks import run_step

    if not settings.SAGABOARD_ENQUEUE:
        return
    options = {"countdown": delay} if delay > 0 else {}
    run_step.apply_async((str(saga_id), work.kind.value, work.index, number), **options)


def enqueue_publish(saga_id, event_type: str) -> None:
    from ..tasks import publish_event as publish_task

    if settings.SAGABOARD_ENQUEUE:
        publish_task.delay(str(saga_id), event_type)


def due_works(transition) -> tuple[machine.Work, ...]:
    """The calls a transition makes due: at most one in orchestration, any number in choreography (fan-out)."""
    works = getattr(transition, "works", None)
    if works is not None:
        return works
    return () if transition.work is None else (transition.work,)


def published_data(loaded: Loaded, transition, **data) -> dict[str, dict]:
    """Choreography: the data written with each business event that `transition` publishes."""
    if loaded.flow is None:
        return {}
    return {name: {"correlation_id": loaded.saga.correlation_id, **data}
            for name in transition.flow.published - loaded.flow.published}
