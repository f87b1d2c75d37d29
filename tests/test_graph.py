"""The flow graphs: build_dot as a pure function, render_svg's ids and classes, the graph.svg endpoints."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET

import pytest

from sagas.demo.definitions import ORDER_FULFILMENT
from sagas.graph import build_dot, compensation_order, render_svg

SVG = "{http://www.w3.org/2000/svg}"
STEPS = ORDER_FULFILMENT["steps"]


def svg_nodes(svg: str) -> dict[str, ET.Element]:
    """The <g> elements of an SVG by id (the parser decodes dot's &#45; back to '-')."""
    root = ET.fromstring(svg)
    return {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("id")}


def edge_labels(dot: str) -> dict[str, str]:
    return dict(re.findall(r'id="comp-([^"]+)".*?label=" (\d+) "', dot))


def test_it_draws_one_node_per_step_with_its_id_name_action_and_compensation():
    dot = build_dot(STEPS)

    for step in STEPS:
        assert f'id="step-{step["name"]}"' in dot
        assert step["action"] in dot
        if step["compensation"]:
            assert f"undo: {step['compensation']}" in dot


def test_it_draws_the_forward_path_solid_from_start_to_completed():
    dot = build_dot(STEPS)

    forward = re.findall(r'"([^"]+)" -> "([^"]+)" \[id="next-[^"]+", class="forward"\]', dot)
    assert forward == [("start", "reserve_inventory"), ("reserve_inventory", "charge_payment"),
                       ("charge_payment", "create_shipment"), ("create_shipment", "send_notification"),
                       ("send_notification", "end")]


def test_it_numbers_compensations_in_the_order_they_run_and_skips_steps_without_one():
    dot = build_dot(STEPS)

    assert edge_labels(dot) == {"create_shipment": "1", "charge_payment": "2", "reserve_inventory": "3"}
    assert 'id="comp-send_notification"' not in dot
    assert dot.count("style=dashed") == 3
    assert compensation_order(STEPS) == [2, 1, 0]


def test_it_draws_each_compensation_back_to_the_previous_step():
    dot = build_dot(STEPS)

    back = re.findall(r'"([^"]+)" -> "([^"]+)" \[id="comp-[^"]+"[^\]]*dir=back', dot)
    assert back == [("charge_payment", "create_shipment"), ("reserve_inventory", "charge_payment"),
                    ("start", "reserve_inventory")]


def test_it_classes_and_labels_each_node_by_its_status_when_given_statuses():
    dot = build_dot(STEPS, {"reserve_inventory": "compensated", "charge_payment": "failed"})

    assert 'id="step-reserve_inventory", class="step status-compensated"' in dot
    assert 'id="step-charge_payment", class="step status-failed"' in dot
    assert 'id="step-create_shipment", class="step status-pending"' in dot  # not yet reached
    assert 'id="comp-reserve_inventory", class="compensation taken"' in dot


def test_it_is_pure_the_same_input_gives_the_same_text():
    assert build_dot(STEPS, {"charge_payment": "running"}) == build_dot(STEPS, {"charge_payment": "running"})
    assert build_dot(STEPS) != build_dot(STEPS, {})


def test_it_quotes_names_with_quotes_and_backslashes():
    steps = [{"name": 'odd "name" \\N', "action": "demo.inventory.reserve", "compensation": None}]

    svg = render_svg(build_dot(steps, {'odd "name" \\N': "running"}))

    node = svg_nodes(svg)['step-odd "name" \\N']
    texts = [t.text for t in node.iter(f"{SVG}text")]
    assert texts[0] == 'odd "name" \\N'


def test_the_svg_keeps_ids_and_status_classes_on_the_node_groups():
    svg = render_svg(build_dot(STEPS, {"reserve_inventory": "succeeded", "charge_payment": "running"}))

    nodes = svg_nodes(svg)
    assert nodes["step-reserve_inventory"].get("class").split() == ["node", "step", "status-succeeded"]
    assert nodes["step-charge_payment"].get("class").split() == ["node", "step", "status-running"]
    texts = [t.text for t in nodes["step-charge_payment"].iter(f"{SVG}text")]
    assert texts == ["charge_payment", "demo.payment.charge", "undo: demo.payment.refund", "running"]
    assert "comp-charge_payment" in nodes


def test_the_svg_has_no_xml_prologue_so_it_can_be_inlined():
    svg = render_svg(build_dot(STEPS))

    assert svg.startswith("<svg")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg


def test_render_svg_is_cached_on_the_dot_text():
    dot = build_dot(STEPS, {"reserve_inventory": "resolved"})
    render_svg(dot)
    hits = render_svg.cache_info().hits

    render_svg(dot)

    assert render_svg.cache_info().hits == hits + 1


# --- the endpoints ------------------------------------------------------------------------------

@pytest.fixture
def saga(demo_definitions):
    from sagas import services
    from sagas.models import Saga

    started, _ = services.start_saga(demo_definitions, {}, "graph-1")
    return Saga.objects.get(pk=started.pk)


def test_the_definition_graph_endpoint_answers_svg_for_a_viewer(viewer_api, demo_definitions):
    response = viewer_api.get("/api/definitions/order-fulfilment/graph.svg")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    nodes = svg_nodes(response.content.decode())
    assert {f"step-{s['name']}" for s in STEPS} <= set(nodes)


def test_the_saga_graph_classes_match_the_api_statuses(viewer_api, saga):
    from sagas.models import SagaStep

    SagaStep.objects.filter(saga=saga, name="reserve_inventory").update(status="succeeded")  # as if it ran

    response = viewer_api.get(f"/api/sagas/{saga.pk}/graph.svg")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    nodes = svg_nodes(response.content.decode())
    for step in viewer_api.get(f"/api/sagas/{saga.pk}/").json()["steps"]:
        assert f"status-{step['status']}" in nodes[f"step-{step['name']}"].get("class").split()
    assert "status-succeeded" in nodes["step-reserve_inventory"].get("class")


@pytest.mark.parametrize("path", ["/api/definitions/no-such-thing/graph.svg", "/api/sagas/not-a-uuid/graph.svg",
                                  f"/api/sagas/{uuid.uuid4()}/graph.svg"])
def test_unknown_graphs_answer_404_json(viewer_api, db, path):
    response = viewer_api.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_the_graph_endpoints_refuse_anonymous_users(anonymous_api, saga):
    assert anonymous_api.get("/api/definitions/order-fulfilment/graph.svg").status_code in (401, 403)
    assert anonymous_api.get(f"/api/sagas/{saga.pk}/graph.svg").status_code in (401, 403)


def test_the_graph_endpoint_answers_503_json_when_dot_is_missing(viewer_api, saga, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    render_svg.cache_clear()
    try:
        response = viewer_api.get(f"/api/sagas/{saga.pk}/graph.svg")
    finally:
        render_svg.cache_clear()

    assert response.status_code == 503
    assert "dot" in response.json()["detail"]
