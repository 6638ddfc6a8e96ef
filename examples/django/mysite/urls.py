"""URL routes: the admin, the health check and the notes list."""

from django.contrib import admin
from django.urls import path

from notes import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz/", views.health, name="health"),
    path("", views.note_list, name="notes"),
]
