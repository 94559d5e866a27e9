"""Configuration at the bottom: settings, the Temporal connection, the data converter and the payload codec.

Imported by the worker, the activities and every face; imports nothing of theirs.
"""
