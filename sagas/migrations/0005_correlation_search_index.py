"""A trigram index for `?search=` (a substring of the correlation id) on PostgreSQL.

Django's `icontains` is `UPPER(col) LIKE UPPER('%x%')`, which a b-tree cannot serve; a GIN
trigram index on UPPER(correlation_id) can. SQLite (the embedded mode) goes without.
"""

from django.db import migrations

from sagas.db import postgres_only

CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS saga_correlation_trgm ON sagas_saga USING gin (UPPER(correlation_id) gin_trgm_ops)",
]
DROP = ["DROP INDEX IF EXISTS saga_correlation_trgm"]


class Migration(migrations.Migration):
    dependencies = [("sagas", "0004_list_orderings")]
    operations = [postgres_only(CREATE, DROP)]
