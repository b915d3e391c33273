"""Training stages, one module each (`sft`, `dpo`, `rm`, `rlhf`), with the RL stage's data, reward and
evaluation helpers (`rl_data`, `rewards`, `rl_eval`)."""
