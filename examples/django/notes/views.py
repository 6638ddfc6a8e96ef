"""Views: the health check used by deploy verification, and the public notes list."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpRequest, HttpResponse, JsonResponse

from mysite import __version__
from notes.models import Note


def health(request: HttpRequest) -> JsonResponse:
    """200 {"status": "ok", ...} when the database answers, 503 otherwise.

    `migration` names the newest applied migration of `notes`, so a deploy can see which
    schema is live (null before the first migrate)."""
    body: dict[str, object] = {"version": __version__}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        latest = (MigrationRecorder.Migration.objects.filter(app="notes")
                  .order_by("-applied", "-id").values_list("name", flat=True).first())
    except DatabaseError as exc:
        body.update(status="error", database="unreachable", error=type(exc).__name__)
        return JsonResponse(body, status=503)
    body.update(status="ok", database="ok", migration=latest)
    return JsonResponse(body)


def note_list(request: HttpRequest) -> HttpResponse:
    titles = list(Note.objects.values_list("title", flat=True)[:50])
    return JsonResponse({"notes": titles})
