"""align/rl."""
