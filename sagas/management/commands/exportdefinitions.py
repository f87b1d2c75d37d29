"""Write the latest version of every saga definition as JSON, for version control or another sagaboard."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand

from sagas.definitions import export


class Command(BaseCommand):
    help = "Export the latest version of each saga definition as JSON (the contract's definition JSON)."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        parser.add_argument("--name", action="append", help="only this definition (repeatable)")

    def handle(self, *args, output: str | None, name: list[str] | None, **options):
        found = export(name)
        text = json.dumps(found, indent=2, ensure_ascii=False) + "\n"
        summary = f"exported {len(found)} definitions: " + ", ".join(f"{d['name']} v{d['version']}" for d in found)
        if output and output != "-":
            with open(output, "w", encoding="utf-8") as file:
                file.write(text)
            self.stdout.write(f"{summary} to {output}")
        else:
            self.stdout.write(text, ending="")
            sys.stderr.write(summary + "\n")
