"""The portal's routes, one router per audience (portal/app.py includes them all).

- account: signing in and out, one's own password and API tokens (everyone)
- workspace: a customer's documents, notice and support requests (contacts, and staff who can see them)
- inbox: open steps and the step forms (Technical Leads, GTS and the desk)
- desk: the queue of open requests across customers (support representatives, managers, TLs)
- operations: programme lists and pages, starting a programme, notices, billable extras, audit log
- api: the JSON API under /api for all of them (OpenAPI at /api/openapi.json)

What more than one of them needs is in `common`.
"""
