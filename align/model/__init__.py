"""Gemma-family decoder in Flax NNX: configs, modules, cache, sharding and checkpoint conversion."""

from align.model.cache import Cache, init_cache
from align.model.config import PRESETS, ModelConfig
from align.model.decoder import Block, Decoder, Output

__all__ = ["Block", "Cache", "Decoder", "ModelConfig", "Output", "PRESETS", "init_cache"]
