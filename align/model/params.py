"""Flat {dotted path: array} views of a decoder, and building a decoder from one without random init."""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from align.errors import InvalidInput
from align.model.config import ModelConfig
from align.model.decoder import Decoder


def _key(path) -> str:
    return ".".join(str(p) for p in path)


def flat_params(model: nnx.Module) -> dict[str, jax.Array]:
    """{"layers.0.attn.q": array, ...} for every nnx.Param of the model."""
    return {_key(path): var[...] for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def from_flat(
    config: ModelConfig,
    flat: Mapping[str, np.ndarray],
    *,
    param_dtype=jnp.float32,
    dtype=jnp.float32,
    source: str = "checkpoint",
) -> Decoder:
    """A Decoder whose parameters are `flat` (shapes checked), built abstractly so nothing is
    initialised twice."""
    abstract = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0), param_dtype=param_dtype, dtype=dtype))
    graphdef, state = nnx.split(abstract)
    remaining = dict(flat)
    for path, var in nnx.to_flat_state(state):
        key = _key(path)
        if key not in remaining:
            raise KeyError(f"{source}: parameter {key!r} is missing")
        arr = remaining.pop(key)
        if tuple(arr.shape) != tuple(var.shape):
            raise InvalidInput(
                f"{source}: {key} has shape {tuple(arr.shape)}, the config expects {tuple(var.shape)}"
            )
        var.set_value(jnp.asarray(arr, dtype=param_dtype))
    if remaining:
        raise KeyError(f"{source}: unexpected parameters {sorted(remaining)[:5]}")
    return nnx.merge(graphdef, state)
