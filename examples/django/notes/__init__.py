"""The notes app: one model (Note), shown on / and editable in the admin."""
