"""The one way a database location is shown: its secrets masked (SPEC §9).

Every place that shows a location — exception messages, log lines, the
status record stored in the target, HTTP answers, the CLI — shows
:func:`mask_location` of it (``Backend.display()`` is that). Driver messages,
which may quote part of the location, pass through :func:`scrub` first.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

#: Query or keyword parameters whose value is a secret (libpq's ``password``,
#: ``sslpassword``; common spellings of the same elsewhere).
_SECRET_PARAMETER = re.compile(
    r"(?i)((?:^|[?&;\s])(?:ssl)?(?:password|passwd|pwd|pass|secret|token|api_?key)\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'|[^&;\s#]*)"
)


def _user_info_end(head: str, start: int) -> int:
    """Index of the ``@`` closing the user-info of ``head[start:]`` (the last one: a password may hold more), or -1."""
    at = head.rfind("@")
    return at if at >= start else -1


def mask_location(location: object) -> str:
    """``location`` as it may be shown: a password in the user-info or in a parameter replaced by ``***``.

    Covers ``scheme://user:password@host/db``, a password holding an
    unencoded ``@`` (the user-info ends at the last ``@`` before the query),
    ``?password=…`` / ``&sslpassword=…`` query parameters, libpq's
    ``key=value`` form, and malformed input (``postgres//u:secret@h/db``,
    ``u:secret@h``): whatever the shape, a ``user:secret@`` part and a secret
    parameter are masked. A location without either is returned unchanged.

    >>> mask_location("postgresql://u:p@ss@h/db?host=/tmp&password=S3cret")
    'postgresql://u:***@h/db?host=/tmp&password=***'
    >>> mask_location("postgres//u:topsecret@h/db")
    'postgres//u:***@h/db'
    """
    text = location if isinstance(location, str) else str(location)
    text = _SECRET_PARAMETER.sub(lambda m: m.group(1) + MASK, text)
    query = text.find("?")
    head, tail = (text, "") if query < 0 else (text[:query], text[query:])
    scheme_end = head.find("//")
    start = scheme_end + 2 if scheme_end >= 0 else 0
    at = _user_info_end(head, start)
    if at >= 0:
        user_info = head[start:at]
        if ":" in user_info:
            head = head[:start] + user_info.split(":", 1)[0] + ":" + MASK + head[at:]
    return head + tail


def secrets_of(location: object) -> list[str]:
    """The secret values ``location`` holds (as written and percent-decoded), longest first."""
    text = location if isinstance(location, str) else str(location)
    found = [m.group(2).strip("'") for m in _SECRET_PARAMETER.finditer(text)]
    head = text.split("?", 1)[0]
    scheme_end = head.find("//")
    start = scheme_end + 2 if scheme_end >= 0 else 0
    at = _user_info_end(head, start)
    if at >= 0 and ":" in head[start:at]:
        found.append(head[start:at].split(":", 1)[1])
    values = {v for f in found if f for v in (f, unquote(f))}
    return sorted(values, key=len, reverse=True)


def scrub(text: str, location: object) -> str:
    """``text`` (a driver's message about ``location``) with the location's secrets masked wherever they appear."""
    for secret in secrets_of(location):
        text = text.replace(secret, MASK)
    return _SECRET_PARAMETER.sub(lambda m: m.group(1) + MASK, text)
