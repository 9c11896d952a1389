"""Tests of the faces: the CLI, the FastAPI router, the admin page, explain, the notebook and the demo data."""
