"""An index for searching sagas by the start of their id on PostgreSQL (`id::text LIKE 'abcd%'`)."""

from django.db import migrations

from sagas.db import postgres_only

CREATE = ['CREATE INDEX IF NOT EXISTS saga_id_prefix ON sagas_saga (("id"::text) text_pattern_ops)']
DROP = ["DROP INDEX IF EXISTS saga_id_prefix"]


class Migration(migrations.Migration):
    dependencies = [("sagas", "0005_correlation_search_index")]
    operations = [postgres_only(CREATE, DROP)]
