"""Follow-up call invitations (A5) as iCalendar REQUESTs that mail clients turn into calendar entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

from icalendar import Calendar, Event, vCalAddress, vText

from domain.activities import CallInvite

PRODID = "-//OpenText TechConnect//orchestration service//EN"


def _utc(value: datetime) -> datetime:
    # Naive datetimes in the service are UTC by convention; clients render UTC in the reader's zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def render_ics(invite: CallInvite, sender: str, *, stamp: datetime | None = None) -> str:
    """One VEVENT with METHOD:REQUEST.

    `sender` is the service's From address ("Name <addr>"): it becomes the organizer's
    SENT-BY, because the service mails on behalf of the TL who organises the call.
    `stamp` (DTSTAMP) defaults to the start time so that a resend produces the same bytes.
    """
    start = _utc(invite.starts_at)
    sender_name, sender_addr = parseaddr(sender)

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "REQUEST")

    event = Event()
    event.add("uid", invite.uid)
    event.add("dtstamp", _utc(stamp) if stamp is not None else start)
    event.add("dtstart", start)
    event.add("dtend", start + timedelta(minutes=invite.duration_minutes))
    event.add("sequence", 0)
    event.add("status", "CONFIRMED")
    event.add("summary", invite.summary)
    if invite.description:
        event.add("description", invite.description)
    if invite.location:
        event.add("location", invite.location)

    organizer = vCalAddress(f"mailto:{invite.organizer_email}")
    if sender_addr and sender_addr.lower() != invite.organizer_email.lower():
        organizer.params["SENT-BY"] = vText(f"mailto:{sender_addr}")
    if sender_name and sender_addr.lower() == invite.organizer_email.lower():
        organizer.params["CN"] = vText(sender_name)
    event.add("organizer", organizer)

    for address in invite.attendee_emails:
        attendee = vCalAddress(f"mailto:{address}")
        attendee.params["ROLE"] = vText("REQ-PARTICIPANT")
        attendee.params["PARTSTAT"] = vText("NEEDS-ACTION")
        attendee.params["RSVP"] = vText("TRUE")
        attendee.params["CUTYPE"] = vText("INDIVIDUAL")
        event.add("attendee", attendee, encode=False)

    cal.add_component(event)
    ics: bytes = cal.to_ical()
    return ics.decode("utf-8")
