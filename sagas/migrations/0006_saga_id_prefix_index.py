"""An index for searching sagas by the start of their id on PostgreSQL (`id::text LIKE 'abcd%'`)."""

from django.db import migrations

CREATE = ['CREATE INDEX IF NOT EXISTS saga_id_prefix ON sagas_saga (("id"::text) text_pattern_ops)']
DROP = ["DROP INDEX IF EXISTS saga_id_prefix"]


def run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("sagas", "0005_correlation_search_index")]
    operations = [migrations.RunPython(run(CREATE), run(DROP))]
