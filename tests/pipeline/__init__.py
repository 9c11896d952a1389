"""Tests of pipeline/: read, compute and write on real sources and targets."""
