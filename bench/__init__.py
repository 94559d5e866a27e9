"""Benchmarks of the service (issue 7): `make bench` runs `python -m bench` and writes bench/results.md."""
