"""The saga state machine, exhaustively: every state reachable by every definition of up to three
steps keeps its shape, waits for exactly the right call, and can come to rest."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from itertools import product

import pytest

from sagas.machine import (
    ACTIVE,
    RESTING,
    VALID_ACTIONS,
    InvalidTransition,
    Kind,
    OnFailure,
    OperatorAction,
    SagaState,
    SagaStatus,
    StepStatus,
    Work,
    act,
    claim,
    expected_work,
    failed,
    start,
    succeeded,
)
from tests.machine_helpers import A, check_shape, saga, step

# --- 3. every state reachable by every definition of up to three steps -----------------------------

def definitions(max_steps: int) -> Iterator[SagaState]:
    for n in range(1, max_steps + 1):
        for flags in product(product([False, True], repeat=2), repeat=n):
            for on_failure in OnFailure:
                yield saga(*(step(f"s{i}", comp, cof) for i, (comp, cof) in enumerate(flags)), on_failure=on_failure)


Node = tuple[SagaState, Work | None]  # the state, and the call in flight (claimed, no outcome yet)


def successors(node: Node) -> Iterator[tuple[str, Node]]:
    """Every move the engine or an operator can make from `node` that the machine accepts."""
    state, flight = node
    if state.status == SagaStatus.PENDING:
        yield "start", (start(state).state, None)
        return
    asked = expected_work(state)
    if flight is None and asked is not None:
        yield f"claim {asked}", (claim(state, asked).state, asked)
    if flight is not None:
        yield "ok", (succeeded(state, flight).state, None)
        yield "retry-fail", (failed(state, flight, True).state, None)
        yield "fail", (failed(state, flight, False).state, None)
    for action in OperatorAction:
        if state.status in VALID_ACTIONS[action]:
            in_flight = flight is not None and flight.kind == A
            yield f"act {action}", (act(state, action, in_flight=in_flight).state, flight)


def reachable(definition: SagaState) -> dict[Node, list[str]]:
    """Every node reachable from a new saga, with one path of moves that reaches it."""
    seen: dict[Node, list[str]] = {(definition, None): []}
    queue = deque(seen)
    while queue:
        node = queue.popleft()
        for label, nxt in successors(node):
            if nxt not in seen:
                seen[nxt] = seen[node] + [label]
                queue.append(nxt)
    return seen


def check_node(node: Node, path: list[str]) -> None:
    state, flight = node
    check_shape(state)
    asked = expected_work(state)
    assert sum(s.status in (StepStatus.RUNNING, StepStatus.COMPENSATING) for s in state.steps) <= 1, path
    if state.status in RESTING:
        assert flight is None and asked is None, path
    if flight is not None:
        # A call in flight: the saga waits for its outcome and asks for nothing else.
        wanted = StepStatus.RUNNING if flight.kind == A else StepStatus.COMPENSATING
        assert state.steps[flight.index].status == wanted, path
        assert asked in (None, flight), path
    elif state.status in ACTIVE - {SagaStatus.PENDING}:
        assert asked is not None, f"an active saga waits for nothing: {path}"
    # Every call but the expected one is refused.
    for kind, index in product(Kind, range(len(state.steps))):
        if Work(kind, index) != asked:
            with pytest.raises(InvalidTransition):
                claim(state, Work(kind, index))
    # Outcomes only for a call that is running.
    for kind, index in product(Kind, range(len(state.steps))):
        wanted = StepStatus.RUNNING if kind == A else StepStatus.COMPENSATING
        if state.steps[index].status != wanted:
            for outcome in (
                lambda w: succeeded(state, w),
                lambda w: failed(state, w, True),
                lambda w: failed(state, w, False),
            ):
                with pytest.raises(InvalidTransition):
                    outcome(Work(kind, index))
    # Operator actions: refused outside the contract's statuses, accepted (never crashing) inside.
    for action, in_flight in product(OperatorAction, [False, True]):
        if state.status in VALID_ACTIONS[action]:
            act(state, action, in_flight=in_flight and flight is not None)
        else:
            with pytest.raises(InvalidTransition):
                act(state, action, in_flight=in_flight)
    # Whatever happened, the saga comes to rest if every call from now on succeeds.
    for _ in range(4 * len(state.steps) + 2):
        if state.status in RESTING:
            break
        if state.status == SagaStatus.PENDING:
            state = start(state).state
        elif flight is not None:
            state, flight = succeeded(state, flight).state, None
        else:
            asked = expected_work(state)
            state, flight = claim(state, asked).state, asked
    assert state.status in RESTING, path


@pytest.mark.parametrize("n", [1, 2, 3])
def test_every_reachable_state_keeps_its_shape_and_can_come_to_rest(n: int):
    visited = 0
    statuses_seen: set[SagaStatus] = set()
    for definition in definitions(n):
        if len(definition.steps) != n:
            continue
        for node, path in reachable(definition).items():
            check_node(node, path)
            statuses_seen.add(node[0].status)
            visited += 1
    assert statuses_seen == set(SagaStatus)
    assert visited >= {1: 90, 2: 1000, 3: 10000}[n]  # the walk really went everywhere
