"""The graph of a choreography: services joined by the events between them (a pure DOT builder).

`build_choreography_dot` groups the steps by the service that runs them (taken from the handler:
`demo.inventory.reserve` -> "inventory", an HTTP handler's `.../inventory/reserve/` -> "inventory")
and joins them by edges labelled with the event names: from the flow's start to the steps that
listen to the start event, from each step to the steps listening to the event it emits, and,
dashed, from a step whose failure event (or any event) appears in another step's
`compensate_on` to that step's compensation. Events nobody listens to end in `end`.

With `statuses` and `published` (a saga), each step node keeps `id="step-<name>"` and the class
`status-<status>` for live recolouring, like `graph.build_dot`, and each event edge carries
`id="event-<name>"` and the class `observed` (the event was published for this saga) or
`expected` (not yet): the observed flow drawn over the expected one.

`definition_svg` and `saga_svg` draw either kind of definition, so callers need not care which.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from . import graph
from .graph import FONT, _q, render_svg, step_node

OBSERVED, EXPECTED = "#2e8a4a", "#9aa3ae"
COMPENSATION = "#b7791f"


def service_of(handler: str) -> str:
    """The service a handler belongs to: `demo.inventory.reserve` -> inventory, `https://h/x/payment/charge/` -> payment."""
    if handler.startswith(("http://", "https://")):
        rest = handler.split("://", 1)[1]
        host, _, path = rest.partition("/")
        parts = [p for p in path.split("?")[0].split("/") if p]
        return parts[-2] if len(parts) >= 2 else host or handler
    parts = [p for p in handler.split(".") if p]
    return parts[-2] if len(parts) >= 2 else (parts[0] if parts else "service")


def build_choreography_dot(steps: Sequence[Any], statuses: Mapping[str, str] | None = None,
                           published: Collection[str] | None = None, *, title: str = "choreography") -> str:
    """The DOT text of a choreography; `steps` are dicts or objects with name, action, compensation,
    on, emits, emits_on_failure and compensate_on."""
    specs = [_spec(step) for step in steps]
    emitted = {e for s in specs for e in (s["emits"], s["emits_on_failure"]) if e}
    listened = {s["on"] for s in specs} | {e for s in specs for e in s["compensate_on"]}
    lines = [
        f"digraph {_q(title)} {{",
        f'  graph [rankdir=LR, bgcolor="transparent", nodesep=0.4, ranksep=0.6, fontname="{FONT}", pad=0.1, '
        f'compound=true];',
        f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize=11, margin="0.14,0.07", '
        f'penwidth=1.4];',
        f'  edge [fontname="{FONT}", fontsize=10, arrowsize=0.7];',
        '  "start" [id="start", label="start", shape=circle, style=filled, fillcolor="#ffffff", color="#7d8794", '
        'fontsize=9, width=0.55, fixedsize=true];',
        '  "end" [id="end", label="end", shape=doublecircle, style=filled, fillcolor="#ffffff", '
        'color="#7d8794", fontsize=9, width=0.6, fixedsize=true];',
    ]
    services: dict[str, list[dict]] = {}
    for spec in specs:
        services.setdefault(service_of(spec["action"]), []).append(spec)
    for number, (service, members) in enumerate(services.items()):
        lines.append(f"  subgraph {_q(f'cluster_{number}')} {{")
        lines.append(f'    id={_q("service-" + service)}; class="service"; label={_q(service)}; '
                     f'style="rounded,dashed"; color="#9aa3ae"; fontcolor="#5b6472"; fontsize=10;')
        for spec in members:
            lines.append("  " + step_node(spec, statuses))
        lines.append("  }")

    def edge(source: str, target: str, event: str, *, dashed: bool = False, suffix: str = "") -> str:
        seen = published is not None and event in published
        state = "" if published is None else (" observed" if seen else " expected")
        css = ("compensation" if dashed else "event") + state
        colour = COMPENSATION if dashed else (OBSERVED if seen else EXPECTED if published is not None else "#5b6472")
        style = ", style=dashed" if dashed else (", penwidth=2" if seen else "")
        label = f" {event}{suffix} "
        edge_id = _q(f"event-{event}-{source}-{target}")
        if dashed:
            # Drawn from the undone step with dir=back (as graph.build_dot does): the arrow points back to
            # the step that is undone while the layout keeps the flow's ranks left to right.
            source, target, style = target, source, style + ", dir=back"
        return (f"  {_q(source)} -> {_q(target)} [id={edge_id}, class={_q(css)}, "
                f"label={_q(label)}, color={_q(colour)}, fontcolor={_q(colour)}{style}];")

    for spec in specs:
        if spec["on"] and spec["on"] not in emitted:
            lines.append(edge("start", spec["name"], spec["on"]))
    for spec in specs:
        for event in (spec["emits"], spec["emits_on_failure"]):
            if not event:
                continue
            listeners = [s["name"] for s in specs if s["on"] == event]
            for name in listeners:
                lines.append(edge(spec["name"], name, event))
            for undone in (s for s in specs if event in s["compensate_on"] and s["compensation"]):
                lines.append(edge(spec["name"], undone["name"], event, dashed=True, suffix=" (undo)"))
            if event not in listened:
                lines.append(edge(spec["name"], "end", event))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _spec(step: Any) -> dict:
    get = step.get if isinstance(step, Mapping) else lambda key, default=None: getattr(step, key, default)
    return {"name": str(get("name")), "action": str(get("action") or ""),
            "compensation": str(get("compensation") or ""), "on": str(get("on") or ""),
            "emits": str(get("emits") or ""), "emits_on_failure": str(get("emits_on_failure") or ""),
            "compensate_on": [str(e) for e in (get("compensate_on") or [])]}


# --- either kind of definition -----------------------------------------------------------------

def is_choreography(definition) -> bool:
    return getattr(definition, "mode", "") == "choreography"


def definition_svg(definition) -> str:
    """A definition version's graph: services and events for a choreography, graph.definition_svg otherwise."""
    if not is_choreography(definition):
        return graph.definition_svg(definition)
    return render_svg(build_choreography_dot(list(definition.steps.all()),
                                             title=f"{definition.name} v{definition.version}"))


def saga_svg(saga, steps: Sequence[Any]) -> str:
    """A saga's graph coloured by its steps' statuses; a choreography's also shows which events were observed."""
    if not is_choreography(saga.definition):
        return graph.saga_svg(saga, steps)
    return render_svg(build_choreography_dot(steps, {step.name: step.status for step in steps},
                                             published_events(saga, steps),
                                             title=f"{saga.definition_name} v{saga.definition_version}"))


def published_events(saga, steps: Sequence[Any]) -> set[str]:
    """The flow's events that were published for `saga` (from its event log)."""
    from .models import SagaEvent

    specs = [_spec(step) for step in steps]
    names = {e for s in specs for e in (s["on"], s["emits"], s["emits_on_failure"], *s["compensate_on"]) if e}
    return set(SagaEvent.objects.filter(saga=saga, type__in=names).values_list("type", flat=True).distinct())
