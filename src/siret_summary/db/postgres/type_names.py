"""PostgreSQL column types as ``format_type`` writes them, compared by their name alone (SPEC §3's
TIMESTAMPTZ rule, the text types the SIRET prefilter may test with LIKE, the COPY type map)."""

from __future__ import annotations

import re

#: A type modifier as ``format_type`` writes it: ``(20)``, ``(3)``, ``(10,2)``.
_TYPE_MODIFIER = re.compile(r"\(\s*\d+\s*(?:,\s*\d+\s*)?\)")


def base_type(declared: str) -> str:
    """A PostgreSQL column type as ``format_type`` writes it, lower case, without its modifiers:
    ``character varying(20)`` → ``character varying``, ``timestamp(3) with time zone`` → ``timestamp with
    time zone``, ``numeric(10,2)`` → ``numeric``. An array keeps its brackets (``character varying(20)[]`` →
    ``character varying[]``): never taken for its element type (adversarial finding 3 of session 5)."""
    return _TYPE_MODIFIER.sub("", declared).strip().lower()
