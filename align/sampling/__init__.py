"""align/sampling."""
