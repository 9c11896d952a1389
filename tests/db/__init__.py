"""Tests of db/: backends, row versions, pooling, privileges, masking, waits and storage paths."""
