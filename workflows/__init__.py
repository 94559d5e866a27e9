"""Temporal workflows. Modules here import only the standard library, temporalio and
domain/ (a test enforces it), so workflow code stays deterministic and replayable."""
