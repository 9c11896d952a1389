"""The legacy application's DDL (``legacy_schema.sql``): statements per dialect, the declared columns."""

from __future__ import annotations

import functools
import importlib.resources
import re

from siret_summary.demo_data.vocabulary import _DIALECTS, _SOURCE_TABLES

# --------------------------------------------------------------------------- DDL

def legacy_ddl(dialect: str, *, widen_source_varchar: bool) -> list[str]:
    """The legacy application's DDL (``legacy_schema.sql``) as statements.

    Three tables (``"Tous_PV"``, ``invitations``, ``siret_summary``), two
    indexes on ``siret_summary`` and the view ``siret_summary_c4`` that depends
    on it, in creation order. Both SQLite and PostgreSQL run the file as it is;
    ``dialect`` (``"sqlite"`` or ``"postgresql"``) is validated for callers
    that branch on it.

    With ``widen_source_varchar=True`` every ``VARCHAR(n)`` of the two *source*
    tables becomes ``TEXT`` (real data does not fit them on PostgreSQL, e.g. a
    SIRET written with spaces); ``siret_summary`` always keeps its declared
    limits.

    Examples
    --------
    >>> statements = legacy_ddl("postgresql", widen_source_varchar=True)
    >>> [s.split("(")[0].strip() for s in statements][:3]
    ['CREATE TABLE "Tous_PV"', 'CREATE TABLE invitations', 'CREATE TABLE siret_summary']
    >>> "VARCHAR(14)" in statements[0], "VARCHAR(14)" in statements[2]
    (False, True)
    """
    if dialect.lower() not in _DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected 'sqlite' or 'postgresql'")
    statements = []
    for statement in _legacy_statements():
        if widen_source_varchar and _created_name(statement) in _SOURCE_TABLES:
            statement = re.sub(r"VARCHAR\s*\(\s*\d+\s*\)", "TEXT", statement, flags=re.I)
        statements.append(statement)
    return statements


@functools.cache
def _legacy_statements() -> tuple[str, ...]:
    script = importlib.resources.files("siret_summary").joinpath("legacy_schema.sql")
    return tuple(_split_outside_quotes(script.read_text(encoding="utf-8"), ";"))


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside quotes, dropping ``--`` comments."""
    parts: list[str] = []
    current: list[str] = []
    quote = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote is not None:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif text.startswith("--", i):
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        elif char == separator:
            parts.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(char)
        i += 1
    parts.append("".join(current).strip())
    return [part for part in parts if part]


_CREATE = re.compile(r'^CREATE\s+(TABLE|VIEW|INDEX)\s+(?:"((?:[^"]|"")+)"|(\w+))', re.I)


def _created_name(statement: str) -> str | None:
    match = _CREATE.match(statement)
    return None if match is None else _name_of(match)


def _name_of(match: re.Match[str]) -> str:
    """The object a matched CREATE statement creates, unquoted."""
    return (match[2] or match[3]).replace('""', '"')


def _create(statement: str) -> re.Match[str]:
    """The CREATE match of one of the bundled schema's statements (each is one, see _legacy_statements)."""
    match = _CREATE.match(statement)
    assert match is not None, statement[:60]  # legacy_schema.sql ships with the package
    return match


def _drop_statements(dialect: str) -> list[str]:
    """DROP ... IF EXISTS for the legacy views and tables, views first."""
    cascade = " CASCADE" if _DIALECTS[dialect.lower()] == "postgresql" else ""
    created = [_CREATE.match(s) for s in _legacy_statements()]
    views = [m for m in created if m and m[1].upper() == "VIEW"]
    tables = [m for m in created if m and m[1].upper() == "TABLE"]
    return [f"DROP {m[1].upper()} IF EXISTS {_quote(_name_of(m))}{cascade}"
            for m in views + tables]


def _if_missing(statement: str, dialect: str) -> str:
    """The statement rewritten to leave an existing object alone."""
    kind = _create(statement)[1].upper()
    if kind == "VIEW" and _DIALECTS[dialect.lower()] == "postgresql":
        return re.sub(r"^CREATE\s+VIEW", "CREATE OR REPLACE VIEW", statement, flags=re.I)
    return re.sub(rf"^CREATE\s+{kind}", f"CREATE {kind} IF NOT EXISTS", statement, flags=re.I)


def _declared_columns(table: str) -> list[tuple[str, str]]:
    """(column name, SQL base type) of a legacy table, in declared order."""
    statement = next(s for s in _legacy_statements()
                     if _created_name(s) == table and _create(s)[1].upper() == "TABLE")
    body = statement[_create(statement).end():].strip()[1:-1]
    columns = []
    for definition in _split_outside_quotes(body, ","):
        match = re.match(r'(?:"((?:[^"]|"")+)"|(\w+))\s+(\w+)', definition)
        assert match is not None, definition  # every part of a bundled CREATE TABLE is a column definition
        columns.append(((match[1] or match[2]).replace('""', '"'), match[3].upper()))
    return columns


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
