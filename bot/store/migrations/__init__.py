"""Alembic migrations of the store's schema (SQLite and PostgreSQL); run them with `bot db upgrade`."""
