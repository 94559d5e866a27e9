"""Which files a request's thread keeps, from a mail reply or the portal's message form."""

from __future__ import annotations

# Documents and logs a support case needs; nothing executable, no HTML (it would run in the portal's origin
# if a browser rendered it; downloads are served as application/octet-stream anyway).
ATTACHMENT_TYPES = frozenset({"text/plain", "text/csv", "application/pdf", "image/png", "image/jpeg",
                              "application/zip", "application/json", "application/xml", "text/xml"})
ATTACHMENT_MAX_BYTES = 5_000_000
MAX_ATTACHMENTS = 20  # per message


def attachment_refused(filename: str, content_type: str, size: int) -> str | None:
    """Why the file is not kept, or None when it is."""
    if content_type not in ATTACHMENT_TYPES:
        return f"{filename}: {content_type} files are not kept (allowed: {', '.join(sorted(ATTACHMENT_TYPES))})"
    if size > ATTACHMENT_MAX_BYTES:
        return f"{filename}: {size} bytes, more than {ATTACHMENT_MAX_BYTES}"
    return None


def clean_filename(name: str, fallback: str = "attachment") -> str:
    """The name a file is kept and shown under: no path, no control or reserved characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c for c in base if c.isprintable() and c not in '<>:"|?*')
    return kept.strip()[:120] or fallback


def ascii_filename(name: str) -> str:
    """The same name in ASCII, for the plain `filename=` of a Content-Disposition header."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._- ") else "_" for c in clean_filename(name))
