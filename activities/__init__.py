"""Temporal activities: classes grouped by the dependency they wrap (db, mail, documents, dispatch, calendar).

Each class takes its dependencies in `__init__` and is built only in worker.py (and
in tests); every method takes one pydantic model and returns one.
"""
