"""Command modules that are not training stages: `generate`, `convert`, and `config` (the shared
`--config FILE key=value ...` arguments of every stage command)."""
