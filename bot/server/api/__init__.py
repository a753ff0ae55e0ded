"""The REST API: one router per resource (bot/server/api/routes.py gathers them)."""
