"""Import saga definitions from JSON: every definition is validated first, then all are saved, or none."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from sagas.definitions import InvalidImport, import_definitions


class Command(BaseCommand):
    help = ("Import saga definitions from a JSON file ('-' for standard input): a list of definition JSON, "
            "{\"definitions\": [...]} or one definition. A definition that differs from its latest version "
            "becomes a new version; if any definition is invalid, nothing is imported.")

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file: str, **options):
        try:
            text = sys.stdin.read() if file == "-" else open(file, encoding="utf-8").read()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"{file} is not JSON: {exc}") from None
        try:
            saved = import_definitions(payload)
        except InvalidImport as exc:
            details = "\n".join(f"  #{n}: {json.dumps(errors)}" for n, errors in enumerate(exc.errors, start=1) if errors)
            raise CommandError(f"{exc}\n{details}".rstrip()) from None
        new = sum(created for _, created in saved)
        listed = ", ".join(f"{d.name} v{d.version}{' (new)' if created else ''}" for d, created in saved)
        self.stdout.write(f"imported {len(saved)} definitions, {new} new versions: {listed}")
