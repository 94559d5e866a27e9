"""The client layer every face uses (CLI, portal, benchmarks): start, update, signal and query programmes and
requests, with one mapping from Temporal's errors to our refusals (starter/errors.py)."""
