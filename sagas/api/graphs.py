"""The flow graphs as SVG: `/api/definitions/<name>/graph.svg` and `/api/sagas/<id>/graph.svg`.

Viewers may read them. Errors keep the API's JSON shape whatever the client accepts, since an
<img> or a browser asks for images first.
"""

from __future__ import annotations

import graphviz
from django.db.models import Prefetch
from django.http import HttpResponse
from django.urls import path
from rest_framework.exceptions import APIException, NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from .. import choreography_graph as graph  # either kind of definition
from ..models import Definition, DefinitionStep, Saga, SagaStep
from .permissions import IsViewer
from .views import parse_uuid

SVG_TYPE = "image/svg+xml"


class GraphUnavailable(APIException):
    status_code = 503
    default_detail = "the graph cannot be drawn: graphviz's `dot` is not installed or failed"


class JsonForErrors(BaseContentNegotiation):
    """Successes are SVG responses built by hand; everything DRF renders (errors) is JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None


class GraphView(APIView):
    permission_classes = [IsViewer]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonForErrors

    @staticmethod
    def svg(draw, *args) -> HttpResponse:
        try:
            text = draw(*args)
        except (graphviz.ExecutableNotFound, graphviz.CalledProcessError):
            raise GraphUnavailable() from None
        response = HttpResponse(text, content_type=SVG_TYPE)
        response["Cache-Control"] = "private, no-cache"
        return response


class DefinitionGraph(GraphView):
    def get(self, request, name: str):
        definition = (Definition.objects.filter(name=name).order_by("-version")
                      .prefetch_related(Prefetch("steps", DefinitionStep.objects.order_by("index"))).first())
        if definition is None:
            raise NotFound(f"no definition named {name!r}")
        return self.svg(graph.definition_svg, definition)


class SagaGraph(GraphView):
    def get(self, request, saga_id: str):
        saga = Saga.objects.filter(pk=parse_uuid(saga_id)).first()
        if saga is None:
            raise NotFound(f"no saga with id {saga_id}")
        return self.svg(graph.saga_svg, saga, list(SagaStep.objects.filter(saga=saga).order_by("index")))


urlpatterns = [
    path("definitions/<str:name>/graph.svg", DefinitionGraph.as_view(), name="definition-graph"),
    path("sagas/<str:saga_id>/graph.svg", SagaGraph.as_view(), name="saga-graph"),
]
