"""Tests of incremental/: scans, row stamps and per-target state; incremental == full (SPEC §6)."""
