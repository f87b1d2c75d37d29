"""The saga list filters, shared by the API (`GET /api/sagas/`) and the list page (`/sagas/`).

`status` (one or several, comma-separated), `definition`, `correlation_id`, and `search`: a part
of the correlation id, or the start of a saga id (both served by indexes on PostgreSQL).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from django.db.models import Q, QuerySet

from .machine import SagaStatus

STATUSES = [status.value for status in SagaStatus]
# At least four hex digits before a saga id is worth matching on (as people paste short ids).
ID_PREFIX = re.compile(r"[0-9a-f]{4}[0-9a-f-]{0,32}")


def filter_sagas(sagas: QuerySet, params: Mapping[str, str]) -> tuple[QuerySet, dict[str, list[str]]]:
    """The sagas matching `params`, and what was wrong with them by parameter (nothing applied then)."""
    problems: dict[str, list[str]] = {}
    statuses = [value for value in (params.get("status") or "").split(",") if value]
    if unknown := sorted(set(statuses) - set(STATUSES)):
        problems["status"] = [f"unknown status {unknown}; use one of {STATUSES}"]
    elif statuses:
        sagas = sagas.filter(status__in=statuses)
    if value := params.get("definition"):
        sagas = sagas.filter(definition_name=value)
    if value := params.get("correlation_id"):
        sagas = sagas.filter(correlation_id=value)
    if value := (params.get("search") or "").strip():
        match = Q(correlation_id__icontains=value)
        if ID_PREFIX.fullmatch(value.lower()):
            match |= Q(id__startswith=value.lower())
        sagas = sagas.filter(match)
    return sagas, problems
