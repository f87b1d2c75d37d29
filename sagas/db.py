"""Database helpers for migrations: SQL that only PostgreSQL runs (SQLite, the embedded mode, goes without)."""

from __future__ import annotations

from django.db import migrations


def postgres_only(create: list[str], drop: list[str]) -> migrations.RunPython:
    """A migration operation running `create` forwards and `drop` backwards, on PostgreSQL only."""

    def run(statements: list[str]):
        def apply(apps, schema_editor) -> None:
            if schema_editor.connection.vendor == "postgresql":
                for statement in statements:
                    schema_editor.execute(statement)

        return apply

    return migrations.RunPython(run(create), run(drop))
