"""align/data."""
