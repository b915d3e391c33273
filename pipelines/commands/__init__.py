"""Command modules that are not training stages: `generate`, `convert`, and `config` (the shared
`--config FILE key=value ...` arguments of every stage command). Commands raise align.errors'
InputError / RunStopped; only pipelines/cli.py prints them and picks the exit code."""

from __future__ import annotations


def load_model_option(spec: str, option: str):
    """`align.load(spec)` for a command-line argument: a checkpoint it cannot read (tensors with no
    mapping, a config it cannot build) raises InvalidInput naming the option; the input errors loading
    raises itself pass as they are (a missing model's ModelNotFound, a malformed GGUF's InvalidInput,
    which names the file and the fault)."""
    import align
    from align.errors import InputError, InvalidInput

    try:
        return align.load(spec)
    except (ValueError, KeyError) as e:
        if isinstance(e, InputError):
            raise
        detail = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) adds quotes
        raise InvalidInput(f"{option} {spec}: cannot load this checkpoint: {detail}") from e
