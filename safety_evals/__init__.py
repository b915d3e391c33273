"""safety_evals."""
