"""Create or update the demo definitions (idempotent)."""

from django.core.management.base import BaseCommand, CommandError

from sagas.api.serializers import DefinitionSerializer
from sagas.definitions import save_version
from sagas.demo.definitions import demo_definitions


class Command(BaseCommand):
    help = "Create or update the demo saga definitions (idempotent)."

    def handle(self, *args, **options):
        made = []
        for body in demo_definitions():
            serializer = DefinitionSerializer(data=body)
            if not serializer.is_valid():
                raise CommandError(f"demo definition {body['name']} is invalid: {serializer.errors}")
            definition, created = save_version(serializer.validated_data)
            made.append(f"{definition}{' (new)' if created else ''}")
        self.stdout.write(f"demo definitions: {', '.join(made)}")
