"""The embedded stack of `make run` / `techconnect dev`: Temporal dev server, SMTP sink, codec server, demo data."""
