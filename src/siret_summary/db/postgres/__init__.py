"""db.postgres."""
