"""Create (or update) a user in a role, and print an API token for it."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from sagas.roles import ROLES


class Command(BaseCommand):
    help = "Create or update a user in the viewer, operator or admin role; prints its API token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, required=True)
        parser.add_argument("--password", help="set this password (else the user can only use the token)")
        parser.add_argument("--email", default="")

    def handle(self, *args, username, role, password, email, **options):
        if not username.strip():
            raise CommandError("the username must not be empty")
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"email": email})
        if password:
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.is_staff = role == "admin"
        user.save()
        user.groups.set([Group.objects.get(name=role)])
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(f"{'created' if created else 'updated'} {role} {username}; token {token.key}")
