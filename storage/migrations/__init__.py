"""Alembic migrations of the application database (run by `storage.migrate`)."""
