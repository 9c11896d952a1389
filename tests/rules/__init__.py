"""Tests of rules/: the summary rules (SPEC §3–§4), checked on the plain-Python reference and on compute()."""
