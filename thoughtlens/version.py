"""The package version, in one place (pyproject.toml reads it; saved SAEs and results record it)."""

__version__ = "0.1.0"
