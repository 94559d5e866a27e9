"""Reply addresses of request mails: `reply+<tracking>.<token>@<reply domain>`, where the token is an
HMAC of the tracking number with a secret of the service, so nobody can forge a reply into another
request. Pure functions: the secret and the domain come from the settings."""

from __future__ import annotations

import hashlib
import hmac
import re

from domain.request import TRACKING_RE

TOKEN_LENGTH = 20  # hex characters of the HMAC-SHA256: 80 bits
_LOCAL = re.compile(r"^reply\+(?P<tracking>[A-Z0-9-]+)\.(?P<token>[0-9a-f]+)$")


def reply_token(tracking_number: str, secret: str) -> str:
    return hmac.new(secret.encode(), tracking_number.encode(), hashlib.sha256).hexdigest()[:TOKEN_LENGTH]


def reply_address(tracking_number: str, secret: str, domain: str) -> str:
    return f"reply+{tracking_number}.{reply_token(tracking_number, secret)}@{domain}"


def thread_id(tracking_number: str, domain: str) -> str:
    """The Message-ID every mail of the request refers to (In-Reply-To, References): one thread."""
    return f"<request-{tracking_number}@{domain}>"


def request_of_reply(address: str, secret: str, domain: str) -> tuple[str | None, str]:
    """(tracking number, "") for a genuine reply address; (None, why) otherwise."""
    local, _, host = address.strip().strip("<>").rpartition("@")
    if host.lower() != domain.lower():
        return None, f"{address} is not a reply address of {domain}"
    found = _LOCAL.match(local)
    if found is None or not TRACKING_RE.match(found["tracking"]):
        return None, f"{address} names no request (no reply token)"
    tracking = found["tracking"]
    if not hmac.compare_digest(found["token"], reply_token(tracking, secret)):
        return None, f"the reply token of {address} is not the one of request {tracking}"
    return tracking, ""
