"""align/training."""
