"""The package's name and version, importable before anything else (the state records both)."""

PACKAGE = "siret_summary"
__version__ = "0.1.0"
