"""The dashboard pages: small functions that gather rows and render a template."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import Count
from django.shortcuts import get_object_or_404, render

from . import roles
from .models import Alert, Definition, Saga

viewer_required = permission_required(roles.VIEW, raise_exception=True)


@login_required
@viewer_required
def overview(request):
    counts = dict(Saga.objects.values_list("status").annotate(n=Count("pk")).order_by())
    critical = Alert.objects.filter(open=True, severity=Alert.Severity.CRITICAL).select_related("saga")[:50]
    return render(request, "sagas/overview.html", {"counts": counts, "critical": critical})


@login_required
@viewer_required
def saga_list(request):
    sagas = Saga.objects.order_by("-created_at")[:100]
    return render(request, "sagas/saga_list.html", {"sagas": sagas})


@login_required
@viewer_required
def saga_detail(request, saga_id):
    saga = get_object_or_404(Saga.objects.prefetch_related("steps__attempts", "events"), pk=saga_id)
    return render(request, "sagas/saga_detail.html", {"saga": saga})


@login_required
@viewer_required
def definition_list(request):
    return render(request, "sagas/definition_list.html",
                  {"definitions": Definition.objects.order_by("name", "-version")})


@login_required
@viewer_required
def definition_detail(request, name):
    definition = Definition.objects.filter(name=name).order_by("-version").first()
    if definition is None:
        get_object_or_404(Definition, name=name)
    return render(request, "sagas/definition_detail.html", {"definition": definition})


@login_required
@viewer_required
def alert_list(request):
    return render(request, "sagas/alert_list.html", {"alerts": Alert.objects.select_related("saga")[:200]})
