"""Pydantic models and pure rules of the TechConnect programme (no I/O).

Workflow code imports this package, so nothing here may touch the network, the
disk, the clock, SQLAlchemy, jinja2, aiosmtplib or `holidays` (see docs/design.md "Layers and layout").
"""
