"""The system of record: SQLAlchemy 2 tables, repositories and Alembic migrations."""
