"""What the worker serves besides polling: `/metrics` and `/healthz` (a package below the faces, so worker.py
needs no face to serve them)."""
