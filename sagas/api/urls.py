"""URLs of the REST API under /api/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from . import definitions, views

router = DefaultRouter(trailing_slash=True)
router.register("definitions", definitions.DefinitionViewSet, basename="definition")
router.register("sagas", views.SagaViewSet, basename="saga")
router.register("alerts", views.AlertViewSet, basename="alert")
router.register("audit", views.AuditViewSet, basename="audit")
router.register("demo/effects", views.EffectViewSet, basename="effect")

urlpatterns = [path("", include("sagas.api.graphs")), path("", include("sagas.api.events")), path("", include(router.urls))]
