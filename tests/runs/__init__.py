"""Tests of runs/: the guard, status records, cancel, retries and failures named by stage (SPEC §7, §9)."""
