"""Flow graphs: a definition or a saga as DOT (a pure function), and DOT as inlinable SVG.

`build_dot` draws the forward path (solid, left to right, from `start` to `completed`) and the
compensation path as a first-class reverse path: a dashed edge back from each step that has a
compensation to the step before it, numbered in the order compensations run (the last
compensable step first). Every step node keeps `id="step-<name>"` and `class="status-<status>"`
in the SVG, so a page recolours a node by toggling its class instead of re-rendering.

`render_svg` runs Debian's `dot` through the graphviz package; the result depends only on the
DOT text, so it is cached on it: one render per definition version (and per combination of step
statuses for a saga).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import graphviz

# Fill and border per status, so an SVG fetched on its own is coloured too; the pages' CSS
# overrides these through the status-* class when a status changes live.
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "pending": ("#eef0f3", "#9aa3ae"),
    "skipped": ("#eef0f3", "#9aa3ae"),
    "running": ("#dbe8fb", "#2f6fd0"),
    "succeeded": ("#dcf0e1", "#2e8a4a"),
    "compensating": ("#fbeccf", "#b7791f"),
    "compensated": ("#e1e7f0", "#5a6f8c"),
    "failed": ("#f9dcdc", "#c53030"),
    "compensation_failed": ("#f9dcdc", "#c53030"),
    "resolved": ("#ece1f7", "#7b4bb7"),
}
NEUTRAL = ("#f6f7f9", "#7d8794")
ACTIVE_COMPENSATION = {"compensating", "compensated", "compensation_failed"}
FONT = "Helvetica,Arial,sans-serif"


def build_dot(steps: Sequence[Any], statuses: Mapping[str, str] | None = None, *, title: str = "saga",
              rankdir: str = "LR") -> str:
    """The DOT text of a flow: `steps` are dicts or objects with name, action and compensation.

    With `statuses` (step name -> step status) each node is coloured and labelled by its status;
    without, the graph shows the definition alone.
    """
    specs = [_spec(step) for step in steps]
    lines = [
        f"digraph {_q(title)} {{",
        f'  graph [rankdir={rankdir}, bgcolor="transparent", nodesep=0.35, ranksep=0.45, '
        f'fontname="{FONT}", pad=0.1];',
        f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize=11, margin="0.14,0.07", '
        f'penwidth=1.4];',
        f'  edge [fontname="{FONT}", fontsize=10, arrowsize=0.7, color="#5b6472", fontcolor="#5b6472"];',
        '  "start" [id="start", label="start", shape=circle, style=filled, fillcolor="#ffffff", color="#7d8794", '
        'fontsize=9, width=0.55, fixedsize=true];',
        '  "end" [id="end", label="completed", shape=doublecircle, style=filled, fillcolor="#ffffff", '
        'color="#7d8794", fontsize=9, width=0.75, fixedsize=true];',
    ]
    for spec in specs:
        lines.append(step_node(spec, statuses))
    chain = ["start"] + [spec["name"] for spec in specs] + ["end"]
    for before, after in zip(chain, chain[1:], strict=False):
        edge_id = f"next-{after}" if after != "end" else "next-end"
        lines.append(f'  {_q(before)} -> {_q(after)} [id={_q(edge_id)}, class="forward"];')
    for order, index in enumerate(compensation_order(specs), start=1):
        spec = specs[index]
        previous = chain[index]  # the step before it, or "start"
        css = "compensation"
        if statuses is not None and statuses.get(spec["name"]) in ACTIVE_COMPENSATION:
            css += " taken"
        # Drawn from the previous step with dir=back: the layout keeps the forward ranks and the
        # arrow points backwards, so the reverse path runs parallel under the forward one.
        lines.append(
            f"  {_q(previous)} -> {_q(spec['name'])} [id={_q('comp-' + spec['name'])}, class={_q(css)}, dir=back, "
            f'style=dashed, color="#b7791f", fontcolor="#8a5a12", label=" {order} "];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def compensation_order(steps: Sequence[Any]) -> list[int]:
    """Indexes of the steps that have a compensation, in the order compensations run (reverse)."""
    specs = [_spec(step) for step in steps]
    return [i for i in range(len(specs) - 1, -1, -1) if specs[i]["compensation"]]


def step_node(spec: dict, statuses: Mapping[str, str] | None) -> str:
    name = spec["name"]
    rows = [name, spec["action"]]
    if spec["compensation"]:
        rows.append(f"undo: {spec['compensation']}")
    if statuses is None:
        fill, border = NEUTRAL
        css = "step"
    else:
        status = statuses.get(name, "pending")
        fill, border = STATUS_COLOURS.get(status, NEUTRAL)
        css = f"step status-{status}"
        rows.append(status.replace("_", " "))
    # A plain label: one centred <text> per line, so a page can relabel the status line in place.
    label = '"' + "\\n".join(_escape_label(row) for row in rows) + '"'
    # A minimum width that fits the longest status, so a live relabel never overflows the box.
    return (f"  {_q(name)} [id={_q('step-' + name)}, class={_q(css)}, label={label}, fillcolor={_q(fill)}, "
            f"color={_q(border)}, width=1.9];")


def _spec(step: Any) -> dict:
    get = step.get if isinstance(step, Mapping) else lambda key, default=None: getattr(step, key, default)
    return {"name": str(get("name")), "action": str(get("action") or ""), "compensation": str(get("compensation") or "")}


def _q(value: str) -> str:
    """A DOT quoted string."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape_label(value: str) -> str:
    """One line of a quoted label: quotes escaped, and no escapes such as \\N or \\l read from a name."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


_PROLOGUE = re.compile(r"\A\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?(<!--.*?-->\s*)*", re.DOTALL)


@functools.lru_cache(maxsize=512)
def render_svg(dot: str) -> str:
    """The SVG of `dot`, without the XML prologue so that it can be inlined in a page."""
    svg = graphviz.Source(dot).pipe(format="svg", encoding="utf-8")
    return _PROLOGUE.sub("", svg, count=1)


def definition_svg(definition) -> str:
    """A definition version's graph (its steps must be prefetched or are queried once)."""
    return render_svg(build_dot(list(definition.steps.all()), title=f"{definition.name} v{definition.version}"))


def saga_svg(saga, steps: Sequence[Any]) -> str:
    """A saga's graph coloured by its steps' statuses."""
    return render_svg(build_dot(steps, {step.name: step.status for step in steps},
                                title=f"{saga.definition_name} v{saga.definition_version}"))
