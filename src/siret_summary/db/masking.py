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

#: Parameter names (percent-decoded, any case) whose value is a secret: libpq's
#: ``password``, ``sslpassword``; common spellings of the same elsewhere.
_SECRET_NAME = re.compile(r"(?i)(?:ssl)?(?:password|passwd|pwd|pass|secret|token|api_?key)")

#: The start of a ``key=`` parameter: at the start, or after ``?``, ``&``,
#: ``;`` or white space. The key may be percent-encoded (libpq decodes it).
_KEY = re.compile(r"(?P<lead>^|[?&;\s])(?P<key>[A-Za-z0-9_%.\-]+)\s*=\s*")
_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?""")
_IN_QUERY = re.compile(r"[^&#]*")  # libpq reads a URI query value up to the next '&'
_BARE = re.compile(r"[^&;\s#]*")  # keyword form, driver messages: up to a separator


def _value_end(text: str, lead: str, at: int) -> int:
    quoted = _QUOTED.match(text, at)
    if quoted and quoted.end() > at:
        return quoted.end()
    bare = (_IN_QUERY if lead in "?&" and lead else _BARE).match(text, at)
    return at if bare is None else bare.end()  # both patterns match the empty string: never None


def _user_password_span(text: str) -> tuple[int, int] | None:
    """Where the password of ``text``'s ``user:password@`` part lies, or None.

    libpq reads the user-info up to the first ``@`` before the first ``/``
    after ``//``: a ``?`` there is part of the password. To also cover an
    unencoded ``@`` or ``/`` in a password (which libpq would misread), the
    user-info is taken up to the LAST ``@`` after ``//``: at worst more than
    the password is masked, when a later value holds an ``@``.
    """
    scheme_end = text.find("//")
    start = scheme_end + 2 if scheme_end >= 0 else 0
    at = text.rfind("@")
    if at < start:
        return None
    colon = text.find(":", start, at)
    return None if colon < 0 else (colon + 1, at)


def _secret_spans(text: str, user_info: bool = True) -> list[tuple[int, int]]:
    """The ``(begin, end)`` of every secret value in ``text``, sorted."""
    spans = []
    user = _user_password_span(text) if user_info else None
    if user is not None:
        spans.append(user)
    for m in _KEY.finditer(text):
        if _SECRET_NAME.fullmatch(unquote(m.group("key"))):
            spans.append((m.end(), _value_end(text, m.group("lead"), m.end())))
    return sorted(s for s in spans if s[1] > s[0])


def _masked(text: str, user_info: bool = True) -> str:
    """``text`` with every secret value replaced by ``***`` (overlapping values masked once)."""
    out, pos = [], 0
    for begin, end in _secret_spans(text, user_info):
        if begin < pos:  # inside a value already masked
            pos = max(pos, end)
            continue
        out.append(text[pos:begin] + MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def mask_location(location: object) -> str:
    """``location`` as it may be shown: a password in the user-info or in a parameter replaced by ``***``.

    Covers ``scheme://user:password@host/db``, a password holding an
    unencoded ``@``, ``?`` or ``/`` (the user-info ends at the last ``@``),
    ``?password=…`` / ``&sslpassword=…`` query parameters (names
    percent-decoded as libpq does, values up to the next ``&``), quoted
    values (masked whole), libpq's ``key=value`` form, and malformed input (``postgres//u:secret@h/db``,
    ``u:secret@h``): whatever the shape, a ``user:secret@`` part and a secret
    parameter are masked. A location without either is returned unchanged.

    >>> mask_location("postgresql://u:p@ss@h/db?host=/tmp&password=S3cret")
    'postgresql://u:***@h/db?host=/tmp&password=***'
    >>> mask_location("postgres//u:topsecret@h/db")
    'postgres//u:***@h/db'
    """
    return _masked(location if isinstance(location, str) else str(location))


def secrets_of(location: object) -> list[str]:
    """The secret values ``location`` holds (as written and percent-decoded), longest first."""
    text = location if isinstance(location, str) else str(location)
    found = []
    for begin, end in _secret_spans(text):
        value = text[begin:end]
        found.append(value)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            found.append(value[1:-1])
    values = {v for f in found if f for v in (f, unquote(f))}
    return sorted(values, key=len, reverse=True)


def scrub(text: str, location: object) -> str:
    """``text`` (a driver's message about ``location``) with the location's secrets masked wherever they appear."""
    for secret in secrets_of(location):
        text = text.replace(secret, MASK)
    return _masked(text, user_info=False)
