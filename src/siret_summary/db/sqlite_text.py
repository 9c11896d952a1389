"""The bytes of a UTF-16 SQLite database's TEXT cells, as the UTF-8 bytes the read's rules decode (SPEC §3).

The read takes every cell as its bytes (``CAST(… AS BLOB)``, db/sqlite.py);
in a database created with ``PRAGMA encoding = 'UTF-16le'`` or ``'UTF-16be'``
those bytes are UTF-16. They are converted here, before any rule sees them,
so that a value gives the same summary, report and explanation whatever the
database's encoding:

* valid UTF-16 becomes its UTF-8 bytes: exactly what the UTF-8 copy reads;
* text that is not valid UTF-16 (SQLite stores it unchecked, e.g. through
  ``CAST(X'…' AS TEXT)``) becomes the UTF-8 form of its code units, an
  unpaired surrogate as its own 3-byte form (ED A0–BF xx, as SQLite's own
  conversion writes it), and an odd last byte as the byte 0xFF. Neither is
  valid UTF-8, so the read's UTF-8 rule applies as in a UTF-8 database: the
  cell is counted ``text_not_utf8`` and decoded as Windows-1252.

An INTEGER cell's bytes are its text in the database's encoding too, and are
converted alike. BLOB cells are not text: their bytes are read as they are,
in every encoding.
"""

from __future__ import annotations

import os

import pyarrow as pa

#: SQLite's ``PRAGMA encoding`` values and Python's codec for each.
UTF16_CODECS = {"UTF-16le": "utf-16-le", "UTF-16be": "utf-16-be"}

#: The flag column db/sqlite.py adds after each column of a UTF-16 database (see :func:`flag_name`).
TEXT_FLAG_PREFIX = "__siret_summary_utf16:"

#: The codec of each file a connection of this process opened (its real path → codec, None for UTF-8).
_CONNECTED: dict[str, str | None] = {}

#: SQLite's file header: its magic, and where the text encoding is (1 UTF-8, 2 UTF-16le, 3 UTF-16be).
_MAGIC, _ENCODING_AT, _HEADER_CODECS = b"SQLite format 3\x00", 56, {2: "utf-16-le", 3: "utf-16-be"}


def remember(path: str, encoding: str) -> None:
    """Record ``encoding`` (``PRAGMA encoding``, read by a new connection to ``path``) for :func:`codec_of`."""
    _CONNECTED[os.path.realpath(path)] = UTF16_CODECS.get(encoding)


def codec_of(path: str) -> str | None:
    """Python's codec of the text of the SQLite file ``path`` when it is UTF-16; None for UTF-8.

    What the last connection opened to the file in this process read
    (:func:`remember`; a run may read through a connection another backend
    object opened), else the file's header; None when neither tells (a new,
    empty file is UTF-8).
    """
    key = os.path.realpath(path)
    if key in _CONNECTED:
        return _CONNECTED[key]
    try:
        with open(key, "rb") as file:
            header = file.read(_ENCODING_AT + 4)
    except OSError:
        return None
    if len(header) < _ENCODING_AT + 4 or not header.startswith(_MAGIC):
        return None
    return _HEADER_CODECS.get(int.from_bytes(header[_ENCODING_AT:], "big"))


def flag_name(codec: str, name: str) -> str:
    """The flag column of column ``name`` in a file of ``codec``: true where the cell's bytes are text in ``codec``."""
    return f"{TEXT_FLAG_PREFIX}{codec}:{name}"


def utf8_bytes(raw: bytes, codec: str) -> bytes:
    """A TEXT cell's ``raw`` bytes in ``codec`` (a value of :data:`UTF16_CODECS`) as UTF-8 bytes.

    Valid UTF-16 gives its UTF-8 bytes; otherwise see the module's rule
    (unpaired surrogates in their 3-byte form, an odd last byte as 0xFF):
    the result is then not valid UTF-8.
    """
    try:
        return raw.decode(codec).encode("utf-8")
    except UnicodeDecodeError:
        pass
    even = len(raw) - len(raw) % 2
    text = raw[:even].decode(codec, errors="surrogatepass")
    return text.encode("utf-8", errors="surrogatepass") + (b"\xff" if even < len(raw) else b"")


def convert_text_cells(data: pa.Table) -> pa.Table:
    """``data`` with each flagged column's text cells converted by :func:`utf8_bytes` and the flags dropped.

    A column ``c`` is converted where its flag column (:func:`flag_name`, which
    names the codec) is true; the flag columns are removed. ``data`` (a Table
    or a RecordBatch) without flag columns is returned as is.
    """
    flags = [n for n in data.schema.names if n.startswith(TEXT_FLAG_PREFIX)]
    if not flags:
        return data
    for flag in flags:
        codec, _, name = flag[len(TEXT_FLAG_PREFIX):].partition(":")
        column = data.column(name)
        cells = column.to_pylist()
        converted = [utf8_bytes(v, codec) if f and isinstance(v, bytes) else v
                     for v, f in zip(cells, data.column(flag).to_pylist(), strict=True)]
        data = data.set_column(data.schema.get_field_index(name), name, pa.array(converted, column.type))
    return data.drop_columns(flags)
