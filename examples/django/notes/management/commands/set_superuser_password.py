"""`manage.py set_superuser_password`: give the existing DJANGO_SUPERUSER_USERNAME the
password in DJANGO_SUPERUSER_PASSWORD (rotation for the create-only seed).

Prints `changed` or `unchanged`, never the password; fails when the user is missing.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Set the superuser's password from DJANGO_SUPERUSER_PASSWORD."

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        if not username or not password:
            raise CommandError("DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD "
                               "must be set")
        model = get_user_model()
        user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no user {username}: run ensure_superuser first")
        if user.check_password(password):
            self.stdout.write(f"set_superuser_password: {username} unchanged")
            return
        user.set_password(password)
        user.save(update_fields=["password"])
        self.stdout.write(f"set_superuser_password: {username} changed")
