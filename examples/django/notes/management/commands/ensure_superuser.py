"""`manage.py ensure_superuser`: `createsuperuser --noinput` only when the user is missing.

Create-only: an existing user is left exactly as it is (its password is NOT reset), which
is what `createsuperuser` itself does, minus the error it raises on a second run. The
user comes from DJANGO_SUPERUSER_USERNAME / _EMAIL / _PASSWORD. Never prints the password.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the superuser from DJANGO_SUPERUSER_* unless it exists (create-only)."

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "")
        if not username or not os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            raise CommandError("DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD "
                               "must be set")
        users = get_user_model()._default_manager
        if users.filter(**{get_user_model().USERNAME_FIELD: username}).exists():
            self.stdout.write(f"ensure_superuser: {username} exists (unchanged)")
            return
        call_command("createsuperuser", interactive=False, verbosity=0)
        self.stdout.write(f"ensure_superuser: {username} created")
