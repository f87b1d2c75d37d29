"""Page-number pagination whose count stays cheap on millions of rows.

An exact COUNT(*) over a million sagas costs more than the page itself. Counts are exact up to
EXACT_UP_TO rows; past that the count is PostgreSQL's planner estimate, and the page says so
with `"count_is_estimate": true`. Pages and `next` links stay exact.
"""

from __future__ import annotations

import json
from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections
from rest_framework.pagination import PageNumberPagination

EXACT_UP_TO = 10_000


class CappedCountPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        capped = queryset.order_by()[: EXACT_UP_TO + 1].count()
        self.count_is_estimate = False
        if capped <= EXACT_UP_TO:
            return capped
        estimate = planner_estimate(queryset)
        if estimate is None:
            return queryset.count()
        self.count_is_estimate = True
        return max(capped, estimate)


def planner_estimate(queryset) -> int | None:
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


class Pages(PageNumberPagination):
    django_paginator_class = CappedCountPaginator
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        paginator = self.page.paginator
        response.data["count_is_estimate"] = getattr(paginator, "count_is_estimate", False)
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["count_is_estimate"] = {"type": "boolean"}
        return schema
