"""URLs of the demo HTTP services, mounted under /demo/services/."""

from django.urls import path

from . import http_services

urlpatterns = [
    path("<slug:service>/<slug:operation>/", http_services.service, name="demo-service"),
]
