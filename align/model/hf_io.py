"""Hugging Face safetensors directories in and out (config.json + *.safetensors, sharded index too)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from align.errors import MissingInput
from align.model.config import ModelConfig
from align.model.convert import hf_to_params, params_to_hf
from align.model.decoder import Decoder
from align.model.hf_config import from_hf, to_hf
from align.model.params import flat_params, from_flat


def read_safetensors_dir(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a HF checkpoint directory as float32 numpy arrays (bf16 is widened)."""
    from safetensors import safe_open

    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in path.glob("*.safetensors"))
    if not files:
        raise MissingInput(f"{path}: no *.safetensors files (and no model.safetensors.index.json)")
    tensors = {}
    for name in files:
        # framework="flax" reads bf16 too (numpy has no bfloat16).
        with safe_open(str(path / name), framework="flax") as f:
            for key in f.keys():
                tensors[key] = np.asarray(f.get_tensor(key), dtype=np.float32)
    return tensors


def load_hf_dir(path: str | os.PathLike, *, param_dtype=jnp.float32, dtype=jnp.float32) -> Decoder:
    config_file = Path(path) / "config.json"
    if not config_file.exists():
        raise MissingInput(f"{path}: not a Hugging Face checkpoint directory (no config.json)")
    config = from_hf(json.loads(config_file.read_text()), source=str(config_file))
    flat = hf_to_params(read_safetensors_dir(path), config)
    return from_flat(config, flat, param_dtype=param_dtype, dtype=dtype, source=str(path))


def save_hf_dir(model: Decoder, path: str | os.PathLike, *, tokenizer=None,
                generation_config: dict | None = None, max_shard_bytes: int = 2 << 30) -> Path:
    """Write `model` as a transformers-loadable directory; `tokenizer` is any object with save_pretrained."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config: ModelConfig = model.config
    tensors = params_to_hf({k: np.asarray(v, np.float32) for k, v in flat_params(model).items()}, config)
    special = {}
    if tokenizer is not None:
        special = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                   if getattr(tokenizer, k, None) is not None}
    (path / "config.json").write_text(json.dumps(to_hf(config, **special), indent=2))
    shards, current, size = [], {}, 0
    for name in sorted(tensors):
        if current and size + tensors[name].nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensors[name]
        size += tensors[name].nbytes
    shards.append(current)
    if len(shards) == 1:
        save_file(shards[0], str(path / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(path / fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in shard})
        total = sum(t.nbytes for t in tensors.values())
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    if generation_config is not None:
        (path / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    return path
