"""Top-level URLs: the pages, the API, the schema, the admin and the login views."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/schema/ui/", SpectacularSwaggerView.as_view(url_name="schema"), name="schema-ui"),
    path("api/", include("sagas.api.urls")),
    path("", include("sagas.urls")),
]

if settings.SAGABOARD_DEMO_SERVICES:
    # The demo's HTTP services (order-fulfilment-http calls them); off in production with SAGABOARD_DEMO_SERVICES=false.
    urlpatterns.insert(0, path("demo/services/", include("sagas.demo.urls")))
