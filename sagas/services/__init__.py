"""The only code that changes saga state: start, claim a call, record its outcome, operator
actions, choreography events, recovery.

Each change is one transaction: a conditional UPDATE of the saga on its `version` (whose row
count settles races between workers and operators), the steps that changed, the events it
appends, and the alerts it opens or closes (`state.write`). Enqueueing the next call and
publishing to the channel layer happen only after commit. Handlers are never called from here
inside a transaction: `tasks.py` claims, calls (see `execution.py`) and records in three moves.

    state.py      load a saga and write a transition (shared by the modules below)
    starting.py   start_saga, receive_event (a choreography's first event from outside)
    calls.py      claim, record_outcome, advance: a worker's calls of a saga's steps
    operators.py  act: retry, compensate, resolve
    flows.py      choreography: publish received events in flow order
    recovery.py   recover, next_work, check_deadlines (Celery beat)
"""

from .calls import Call, Outcome, advance, claim, record_outcome
from .flows import flow_state, publish_event
from .operators import act
from .recovery import check_deadlines, next_work, recover
from .starting import receive_event, start_saga
from .state import Conflict, NotAllowed

__all__ = [
    "Call", "Conflict", "NotAllowed", "Outcome", "act", "advance", "check_deadlines", "claim", "flow_state", "next_work",
    "publish_event", "receive_event", "record_outcome", "recover", "start_saga",
]
