"""URLs of the dashboard pages."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("sagas/", views.saga_list, name="saga-list"),
    path("sagas/<uuid:saga_id>/", views.saga_detail, name="saga-detail"),
    path("definitions/", views.definition_list, name="definition-list"),
    path("definitions/<slug:name>/", views.definition_detail, name="definition-detail"),
    path("alerts/", views.alert_list, name="alert-list"),
]
