"""Adversarial tests: each tries to break a fast path, a guard or an input edge (docs/decisions.md)."""
