"""Rigs shared by tests/ and bench/: local servers (Temporal, PostgreSQL), an enrolment and a
month of report data. Nothing here imports tests/ or pytest, so the benchmarks can use it."""
