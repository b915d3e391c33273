"""What a run ships: variants (`variants`: HF export, default system prompt, sampling) and their model
cards (`model_card`)."""
