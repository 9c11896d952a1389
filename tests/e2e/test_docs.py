"""The repository's documents stand on their own: the rules cited as "SPEC §N" are docs/spec.md's.

Two checks: no tracked file points outside the repository to a shared spec
(a clone has no sibling folder), and every "SPEC §N" citation names a
section that docs/spec.md has.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "spec.md"

#: Spellings of a path out of the repository to the shared spec (built so this file holds none of them).
OUTSIDE = [s.encode() for s in (".." + "/shared", "shared" + "/SPEC", "/work" + "/shared")]

#: "SPEC §3", "SPEC §3–§4", "SPEC §5, §7", "SPEC.md §2": the whole run of section numbers.
CITATION = re.compile(r"SPEC(?:\.md)?\s*(§\s*\d+(?:\s*(?:[–,-]|and)\s*§?\s*\d+)*)")
SECTION = re.compile(r"^##\s+§(\d+)\.\s", re.MULTILINE)


def _tracked() -> list[Path]:
    """The repository's tracked files (every file outside dot-folders when git is not there)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return [
            p for p in ROOT.rglob("*")
            if p.is_file() and not any(part.startswith(".") and part != ".ci" for part in p.relative_to(ROOT).parts)
        ]
    return [ROOT / name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def _cited_sections(text: str) -> set[int]:
    cited = set()
    for match in CITATION.finditer(text):
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        if len(numbers) == 2 and re.search(r"[–-]", match.group(1)):
            numbers = list(range(numbers[0], numbers[1] + 1))  # a range cites every section in it
        cited.update(numbers)
    return cited


def test_no_file_points_outside_the_repository():
    offenders = [
        f"{path.relative_to(ROOT)} ({needle.decode()})"
        for path in _tracked()
        for needle in OUTSIDE
        if needle in path.read_bytes()
    ]
    assert offenders == [], "these files point outside the repository (cite docs/spec.md instead): " + ", ".join(offenders)


def test_every_spec_citation_names_a_section_of_docs_spec():
    assert SPEC.is_file(), "docs/spec.md is missing: the code cites 'SPEC §N' and nothing defines it"
    sections = {int(n) for n in SECTION.findall(SPEC.read_text(encoding="utf-8"))}
    assert sections == set(range(1, 10)), f"docs/spec.md should have sections §1–§9, has {sorted(sections)}"
    missing = {}
    for path in _tracked():
        if path.suffix not in {".py", ".md", ".sql", ".ipynb", ".toml"}:
            continue
        cited = _cited_sections(path.read_text(encoding="utf-8", errors="replace"))
        if cited - sections:
            missing[str(path.relative_to(ROOT))] = sorted(cited - sections)
    assert missing == {}, f"'SPEC §N' citations naming no section of docs/spec.md: {missing}"
    cited_in_src = set().union(*(
        _cited_sections(p.read_text(encoding="utf-8")) for p in (ROOT / "src").rglob("*.py")
    ))
    assert cited_in_src, "no 'SPEC §N' citation found in src/: the citation pattern no longer matches them"


def test_citation_pattern_reads_ranges_and_lists():
    assert _cited_sections("rules (SPEC §3–§4); write (SPEC §5, §7); SPEC.md §2") == {2, 3, 4, 5, 7}
    assert _cited_sections("SPEC §" + "12") == {12}  # split, so this file cites no missing section
