"""End to end: runs on real databases, the documents, the layering, the wheel and the benchmark smoke test."""
