"""The country codes the business calendar accepts (rule C5), for the activities and the client layer.

The list is whatever the installed `holidays` package supports, so it changes with its releases.
It lives here, not in `domain/calendar.py`: domain/ imports no I/O library and `holidays` is one of
them (tests/test_architecture.py); and not in `activities/calendar.py`, which the client layer
(starter/) must not import. No workflow imports this module.
"""

from __future__ import annotations

from functools import lru_cache

import holidays as holidays_lib


@lru_cache(maxsize=1)
def _supported() -> frozenset[str]:
    return frozenset(holidays_lib.list_supported_countries(include_aliases=True))


def supported_countries() -> set[str]:
    """Country codes the calendar activities accept (ISO 3166 alpha-2, plus the package's aliases)."""
    return set(_supported())
