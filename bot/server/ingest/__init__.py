"""Ingest offload: worker processes that validate and encode big bodies, and their pipe protocol."""
