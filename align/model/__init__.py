"""align/model."""
