"""The Django admin for saga definitions: steps inline and in order, validated, versioned, with a graph.

Saving never changes a definition in place: the form is judged by the rules of
`sagas.definitions` (the API's rules) and saved as the next version of its name, so sagas that
started on an earlier version keep running the steps they copied. A definition that sagas ran
on cannot be deleted. Each change page lists the versions and compares any two of them.

Only admins reach the admin: superusers and members of the `admin` group (sagas/roles.py), staff
flag or not.
"""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from . import definitions
from .models import Definition, DefinitionStep

log = logging.getLogger(__name__)

ADMIN_GROUP = "admin"
STEP_FIELDS = ["index", "name", "action", "compensation", "max_attempts", "backoff_seconds", "timeout_seconds",
               "compensate_on_failure"]
CHOREOGRAPHY_FIELDS = ["on", "emits", "emits_on_failure", "compensate_on"]


# --- who may enter -----------------------------------------------------------------------------

def is_sagaboard_admin(user) -> bool:
    return bool(user.is_active and (user.is_superuser or user.groups.filter(name=ADMIN_GROUP).exists()))


class AdminLoginForm(AdminAuthenticationForm):
    """The admin login, for sagaboard admins rather than Django's `is_staff` users."""

    def confirm_login_allowed(self, user) -> None:
        AuthenticationForm.confirm_login_allowed(self, user)
        if not is_sagaboard_admin(user):
            raise ValidationError(self.error_messages["invalid_login"], code="invalid_login",
                                  params={"username": self.username_field.verbose_name})


def _site_permission(request: HttpRequest) -> bool:
    return is_sagaboard_admin(request.user)


# The default site, told who sagaboard's admins are (no settings change, no second site to route).
admin.site.has_permission = _site_permission
admin.site.login_form = AdminLoginForm
admin.site.site_header = admin.site.site_title = "sagaboard admin"
admin.site.site_url = "/"


# --- steps inline ------------------------------------------------------------------------------

class StepForm(forms.ModelForm):
    class Meta:
        model = DefinitionStep
        fields = STEP_FIELDS + CHOREOGRAPHY_FIELDS
        help_texts = {"index": "order in which the steps run (renumbered 0, 1, 2… on save)"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "index" in self.fields:
            self.fields["index"].required = False  # a new step without one goes last

    # The steps are saved as rows of a new version, never over these: checking them against the
    # current version's rows would refuse swapping two indexes. The version's rules apply instead.
    def validate_unique(self) -> None:
        pass

    def validate_constraints(self) -> None:
        pass


class StepFormSet(BaseInlineFormSet):
    """Judges the steps together by the rules of sagas.definitions and puts them in order."""

    def validate_unique(self) -> None:
        """Duplicates are judged in clean(), with the messages the API gives."""

    def clean(self) -> None:
        super().clean()
        live = [(position, form) for position, form in enumerate(self.forms)
                if getattr(form, "cleaned_data", None) and not form.cleaned_data.get("DELETE")]
        if not live:
            raise ValidationError("a definition needs at least one step")
        seen: set[int] = set()
        for _, form in live:
            index = form.cleaned_data.get("index")
            if index is not None and index in seen:
                form.add_error("index", f"the index {index} is used by another step")
            seen.add(index)
        live.sort(key=lambda item: (item[1].cleaned_data.get("index") is None,
                                    item[1].cleaned_data.get("index") or 0, item[0]))
        self.ordered_steps = [_step_data(form.cleaned_data) for _, form in live]
        for (_, form), errors in zip(live, definitions.step_problems(self.ordered_steps), strict=True):
            for field_name, problems in errors.items():
                form.add_error(field_name if field_name in form.fields else None, problems)
        # The mode as posted with the definition's own form (the formset only sees the saved one).
        if self.data.get("mode", self.instance.mode) == Definition.Mode.CHOREOGRAPHY:
            if problems := definitions.choreography_problems(self.ordered_steps):
                raise ValidationError(problems)


def _step_data(cleaned: dict) -> dict:
    keys = [key for key in STEP_FIELDS + CHOREOGRAPHY_FIELDS if key != "index" and key in cleaned]
    return {key: cleaned[key] for key in keys}


class StepInline(admin.TabularInline):
    model = DefinitionStep
    form = StepForm
    formset = StepFormSet
    extra = 1
    min_num = 0
    ordering = ("index",)

    def get_fields(self, request, obj=None):
        # A new definition may be either kind; an orchestration has no use for the event fields.
        if obj is None or obj.mode == Definition.Mode.CHOREOGRAPHY:
            return STEP_FIELDS + CHOREOGRAPHY_FIELDS
        return STEP_FIELDS


# --- definitions -------------------------------------------------------------------------------

@admin.register(Definition)
class DefinitionAdmin(admin.ModelAdmin):
    inlines = [StepInline]
    list_display = ("name", "version", "mode", "on_failure", "step_count", "saga_count", "created_at", "created_by")
    list_display_links = ("name", "version")
    list_filter = ("mode", "on_failure")
    search_fields = ("name", "description")
    ordering = ("name", "-version")
    change_form_template = "admin/sagas/definition/change_form.html"

    def get_fields(self, request, obj=None):
        fields = ["name", "mode", "on_failure", "description"]
        if obj is None or obj.mode == Definition.Mode.CHOREOGRAPHY:
            fields.append("deadline_seconds")
        if obj is not None:
            fields += ["version", "created_at", "created_by", "version_list", "graph_preview"]
        return fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # The name is what the versions share; a new name is a new definition (add one).
        return ("name", "version", "created_at", "created_by", "version_list", "graph_preview")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by").prefetch_related("steps")

    @admin.display(description="steps")
    def step_count(self, obj: Definition) -> int:
        return len(obj.steps.all())

    @admin.display(description="sagas")
    def saga_count(self, obj: Definition) -> int:
        return obj.sagas.count()

    @admin.display(description="versions")
    def version_list(self, obj: Definition):
        versions = Definition.objects.filter(name=obj.name).order_by("-version").select_related("created_by")
        rows = []
        for other in versions:
            link = reverse("admin:sagas_definition_change", args=[other.pk])
            compare = ""
            if other.version != obj.version:
                compare = format_html('<a href="{}?against={}">compare with v{}</a>',
                                      reverse("admin:sagas_definition_compare", args=[obj.pk]), other.version,
                                      other.version)
            rows.append((link, other.version, " (this one)" if other.pk == obj.pk else "",
                         other.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                         other.created_by.get_username() if other.created_by else "—", other.sagas.count(), compare))
        body = format_html_join("", '<tr><td><a href="{}">v{}</a>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
                                    "</tr>", rows)
        return format_html('<table class="sagaboard-versions"><thead><tr><th>version</th><th>saved</th><th>by</th>'
                           "<th>sagas</th><th></th></tr></thead><tbody>{}</tbody></table>", body)

    @admin.display(description="graph")
    def graph_preview(self, obj: Definition):
        return preview(obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        definition = self.get_object(request, object_id)
        latest = definitions.latest(definition.name) if definition else None
        extra_context = {**(extra_context or {}), "latest_version": latest.version if latest else None}
        return super().change_view(request, object_id, form_url, extra_context)

    # Saving: always a new version, through sagas.definitions.save_version.

    def save_model(self, request, obj, form, change) -> None:
        """Nothing here: the definition and its steps are saved together in save_related."""

    def save_related(self, request, form, formsets, change) -> None:
        steps = next(formset for formset in formsets if isinstance(formset, StepFormSet))
        data = {"name": form.instance.name, "mode": form.cleaned_data.get("mode", form.instance.mode),
                "on_failure": form.cleaned_data.get("on_failure", form.instance.on_failure),
                "description": form.cleaned_data.get("description", form.instance.description),
                "deadline_seconds": form.cleaned_data.get("deadline_seconds", form.instance.deadline_seconds),
                "steps": steps.ordered_steps}
        previous = form.instance.version if change else None
        saved, created = definitions.save_version(data, request.user)
        # From here on the admin (its log entry, its redirect) goes on with the version just saved.
        form.instance.pk, form.instance.version = saved.pk, saved.version
        form.instance._state.adding = False
        request.sagaboard_saved = (saved, created, previous)

    def construct_change_message(self, request, form, formsets, add=False):
        saved, created, previous = request.sagaboard_saved
        if not created:
            return f"saved without changes (still version {saved.version})"
        return f"saved as version {saved.version}" + (f" (edited from version {previous})" if previous else "")

    def response_add(self, request, obj, post_url_continue=None):
        self._message(request)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        self._message(request)
        response = super().response_change(request, obj)
        if "_continue" in request.POST:
            # Go on editing the version just saved, not the one the form came from.
            response = HttpResponseRedirect(reverse("admin:sagas_definition_change", args=[obj.pk]))
        return response

    def _message(self, request) -> None:
        saved, created, previous = request.sagaboard_saved
        if not created:
            messages.info(request, f"Nothing changed: {saved.name} stays at version {saved.version}.")
        elif previous is not None:
            messages.info(request, f"Saved {saved.name} as version {saved.version}. Sagas already started keep the "
                                   f"version they started on (v{previous} and earlier); new sagas use "
                                   f"v{saved.version}.")
        else:
            messages.info(request, f"Saved {saved.name} as version {saved.version}.")

    # Deleting: refused while sagas ran on the version (they point at it for their history).

    def delete_view(self, request, object_id, extra_context=None):
        definition = self.get_object(request, object_id)
        if definition is not None and (count := definition.sagas.count()):
            messages.error(request, f"{definition} cannot be deleted: {count} saga(s) ran on it and keep it as their "
                                    f"record. Save a new version instead; new sagas will use that.")
            return HttpResponseRedirect(reverse("admin:sagas_definition_change", args=[definition.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_queryset(self, request, queryset) -> None:
        used = [str(d) for d in queryset if d.sagas.exists()]
        if used:
            messages.error(request, f"Nothing deleted: sagas ran on {', '.join(used)}.")
            return
        super().delete_queryset(request, queryset)

    # Comparing two versions.

    def get_urls(self):
        urls = [path("<path:object_id>/compare/", self.admin_site.admin_view(self.compare_view),
                     name="sagas_definition_compare")]
        return urls + super().get_urls()

    def compare_view(self, request, object_id):
        definition = get_object_or_404(Definition, pk=object_id)
        if not self.has_view_permission(request, definition):
            return HttpResponseRedirect(reverse("admin:index"))
        raw = request.GET.get("against", "")
        against_number = int(raw) if raw.isdigit() else definition.version - 1
        against = Definition.objects.filter(name=definition.name, version=against_number).first()
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "definition": definition,
            "against": against, "title": f"{definition.name}: v{against_number} → v{definition.version}",
            "diff": definitions.diff(against, definition) if against else None,
            "versions": Definition.objects.filter(name=definition.name).exclude(pk=definition.pk)
            .order_by("-version").values_list("version", flat=True),
        }
        return TemplateResponse(request, "admin/sagas/definition/compare.html", context)


def preview(definition: Definition):
    """The definition's flow graph as inline SVG; the steps as an ordered list if it cannot be drawn."""
    try:
        from . import graph

        return mark_safe(graph.definition_svg(definition))  # noqa: S308 (dot's own escaped SVG)
    except Exception:  # noqa: BLE001 (no `dot` binary, or graph.py failing: still show the steps)
        log.warning("graph preview of %s failed; showing the steps as a list", definition, exc_info=True)
        items = format_html_join("", "<li>{} <code>{}</code>{}</li>", (
            (step.name, step.action, format_html(" — undone by <code>{}</code>", step.compensation)
             if step.compensation else "") for step in definition.steps.all()))
        return format_html('<ol class="sagaboard-steps">{}</ol>', items)
