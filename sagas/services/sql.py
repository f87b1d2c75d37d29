"""Plain SQL for the engine's hot path: read a saga with its steps, and write a transition's rows.

Every step of every saga goes through these two, so they skip what the ORM does per query
(compiling the query, one model instance per joined row) and make as few round trips as they can:

- `read_saga`: the saga, its definition's mode and its steps in one query, one instance each.
- `Batch`: the writes of one transition sent together. On PostgreSQL they go in one round trip
  (psycopg's pipeline mode), each as a statement prepared on the server once per connection
  (settings.py turns psycopg's prepared statements back on, which Django turns off); elsewhere
  (SQLite, the embedded mode) one statement at a time.

Only plain SELECTs by key, INSERTs and UPDATEs by equality, built from the models' metadata;
values are prepared and converted by the fields and the backend as the ORM does it
(`get_db_prep_save`, the backend's and the field's converters). No signals, no `save()`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections, models

from ..models import Definition, Saga, SagaStep


def _db():
    """The connection itself: `django.db.connection` is a proxy that costs a lookup per attribute."""
    return connections[DEFAULT_DB_ALIAS]


def read_saga(saga_id, before: Batch | None = None) -> tuple[Saga, str, list[SagaStep]] | None:
    """The saga, its definition's mode and its steps in order; None if there is no such saga.

    `before`: writes to make first, in the same round trip (`RowsMissed` if one of them missed).
    """
    db = _db()
    saga_reader, step_reader = _reader(db, Saga), _reader(db, SagaStep)
    batch = before or Batch()
    batch.select(_read_saga_sql(db.vendor), [Saga._meta.pk.get_db_prep_value(saga_id, db)])
    rows = batch.run()
    if not rows:
        return None  # a saga always has steps
    width = len(saga_reader.fields)
    saga = saga_reader.instance(db, rows[0][:width])
    steps = [step_reader.instance(db, row[width + 1:]) for row in rows]
    for step in steps:
        step.saga = saga
    return saga, rows[0][width], steps


@functools.cache
def _read_saga_sql(vendor: str) -> str:
    db = _db()
    quote = db.ops.quote_name
    return (f"SELECT {_reader(db, Saga).columns(db, 's')}, d.{quote('mode')}, {_reader(db, SagaStep).columns(db, 't')} "
            f"FROM {quote(SagaStep._meta.db_table)} t "
            f"JOIN {quote(Saga._meta.db_table)} s ON s.{quote('id')} = t.{quote('saga_id')} "
            f"JOIN {quote(Definition._meta.db_table)} d ON d.{quote('id')} = s.{quote('definition_id')} "
            f"WHERE t.{quote('saga_id')} = %s ORDER BY t.{quote('index')}")


class _Reader:
    """Builds instances of a model from its columns, converted as the ORM converts them."""

    def __init__(self, db, model: type[models.Model]):
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.names = [f.attname for f in self.fields]
        self.columns_of = [f.get_col(model._meta.db_table) for f in self.fields]
        # Only the columns that need converting, with their converters.
        self.converting = [
            (position, column, converters)
            for position, (f, column) in enumerate(zip(self.fields, self.columns_of, strict=True))
            if (converters := [*db.ops.get_db_converters(column), *f.get_db_converters(db)])
        ]

    def columns(self, db, alias: str) -> str:
        return ", ".join(f"{alias}.{db.ops.quote_name(f.column)}" for f in self.fields)

    def instance(self, db, values) -> models.Model:
        values = list(values)
        for position, column, converters in self.converting:
            value = values[position]
            for convert in converters:
                value = convert(value, column, db)
            values[position] = value
        return self.model.from_db(db.alias, self.names, values)


_readers: dict[tuple[str, type], _Reader] = {}


def _reader(db, model: type[models.Model]) -> _Reader:
    key = (db.vendor, model)
    if key not in _readers:
        _readers[key] = _Reader(db, model)
    return _readers[key]


_PARAMETERS_KEPT = 50  # psycopg caches the parsing of statements with at most this many parameters


class RowsMissed(Exception):
    """A conditional update found no row: someone else changed it first."""


@dataclass
class _Statement:
    sql: str
    params: list
    expect_rows: int | None = None  # a conditional update: the row count it must reach
    returning_into: list[models.Model] = field(default_factory=list)  # inserted rows that get their pk
    fetch: bool = False  # a query: `run` returns its rows


class Batch:
    def __init__(self) -> None:
        self.db = _db()
        self.statements: list[_Statement] = []

    def update(self, model: type[models.Model], where: dict, values: dict, *, conditional: bool = False) -> None:
        """UPDATE the rows of `model` equal to `where` (field names; "pk" allowed) with `values`.

        `conditional`: the update must change exactly one row, or `run` raises `RowsMissed`.
        """
        if not values:
            return
        db = self.db
        sql, set_fields, where_fields = _update_sql(db.vendor, model, tuple(values), tuple(where))
        params = [f.get_db_prep_save(value, db) for f, value in zip(set_fields, values.values(), strict=True)]
        params += [f.get_db_prep_value(value, db) for f, value in zip(where_fields, where.values(), strict=True)]
        self.statements.append(_Statement(sql, params, expect_rows=1 if conditional else None))

    def insert(self, rows: list[models.Model], *, returning_pk: bool = False, ignore_conflicts: bool = False) -> None:
        """INSERT `rows` (instances of one model); `returning_pk` sets their pk; `ignore_conflicts`
        skips the rows that break a unique constraint.

        A few rows per statement: psycopg parses the text of a statement with more than 50
        parameters anew every time, and each row count is another statement shape to prepare.
        """
        if not rows:
            return
        db = self.db
        _, columns = _insert_sql(db.vendor, type(rows[0]), 1, returning_pk, ignore_conflicts)
        per_statement = max(1, _PARAMETERS_KEPT // len(columns))
        for first in range(0, len(rows), per_statement):
            chunk = rows[first:first + per_statement]
            sql, columns = _insert_sql(db.vendor, type(rows[0]), len(chunk), returning_pk, ignore_conflicts)
            params = []
            for row in chunk:
                params += [f.get_db_prep_save(f.pre_save(row, add=True), db) for f in columns]
            self.statements.append(_Statement(sql, params, returning_into=chunk if returning_pk else []))

    def select(self, sql: str, params: list) -> None:
        """A query to run last; `run` returns its rows."""
        self.statements.append(_Statement(sql, params, fetch=True))

    def run(self) -> list[tuple] | None:
        """Execute the statements in order and return the rows of the `select`, if any;
        `RowsMissed` if a conditional update missed.

        Sent together, a statement after a missed conditional update may break a unique
        constraint (another transaction wrote the same rows first); that IntegrityError is
        raised as is, and the caller's transaction is rolled back either way.
        """
        if not self.statements:
            return None
        if self.db.vendor == "postgresql":
            return self._run_pipelined()
        rows = None
        with self.db.cursor() as cursor:
            for statement in self.statements:
                cursor.execute(statement.sql, statement.params)
                fetched = self._check(statement, cursor)
                rows = fetched if statement.fetch else rows
        return rows

    def _run_pipelined(self) -> list[tuple] | None:
        """PostgreSQL: psycopg's pipeline mode sends every statement (and the transaction's BEGIN)
        in one round trip; each is a prepared statement bound on the server, so PostgreSQL plans
        each shape once per connection and no value is quoted into SQL text."""
        self.db.ensure_connection()
        raw, started = self.db.connection, time.monotonic()
        cursors = []
        # Outside a transaction a single statement is one round trip anyway; the pipeline would only add its own work.
        alone = len(self.statements) == 1 and self.db.get_autocommit()
        with self.db.wrap_database_errors, contextlib.nullcontext() if alone else raw.pipeline():
            for statement in self.statements:
                cursor = psycopg.Cursor(raw)
                cursor.execute(statement.sql, statement.params, prepare=True)
                cursors.append(cursor)
        if self.db.queries_logged:  # what Django's debug cursor would have noted (assertNumQueries, the bench)
            duration = f"{time.monotonic() - started:.3f}"
            self.db.queries_log.extend({"sql": statement.sql, "time": duration} for statement in self.statements)
        rows = None
        for statement, cursor in zip(self.statements, cursors, strict=True):
            fetched = self._check(statement, cursor)
            rows = fetched if statement.fetch else rows
        return rows

    def _check(self, statement: _Statement, cursor) -> list[tuple] | None:
        if statement.expect_rows is not None and cursor.rowcount != statement.expect_rows:
            raise RowsMissed(statement.sql.split(" WHERE ")[0][:80])
        if statement.fetch:
            return cursor.fetchall()
        if statement.returning_into:
            for row, (pk,) in zip(statement.returning_into, cursor.fetchall(), strict=True):
                row.pk = pk
                row._state.adding, row._state.db = False, self.db.alias
        return None


# The statements' text, built once per shape (the engine writes few shapes, over and over).

@functools.cache
def _update_sql(vendor: str, model: type[models.Model], set_names: tuple, where_names: tuple) -> tuple:
    meta, quote = model._meta, _db().ops.quote_name
    set_fields = [meta.get_field(name) for name in set_names]
    where_fields = [meta.pk if name == "pk" else meta.get_field(name) for name in where_names]
    sql = (f"UPDATE {quote(meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in set_fields)} "
           f"WHERE {' AND '.join(f'{quote(f.column)} = %s' for f in where_fields)}")
    return sql, set_fields, where_fields


@functools.cache
def _insert_sql(vendor: str, model: type[models.Model], count: int, returning_pk: bool, ignore_conflicts: bool) -> tuple:
    meta, quote = model._meta, _db().ops.quote_name
    columns = [f for f in meta.concrete_fields if f is not meta.auto_field]  # the database numbers them
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in columns)}) "
           f"VALUES {', '.join([placeholders] * count)}")
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"  # PostgreSQL and SQLite alike
    if returning_pk:
        sql += f" RETURNING {quote(meta.pk.column)}"
    return sql, columns
