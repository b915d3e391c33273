"""Hugging Face safetensors directories in and out (config.json + *.safetensors, sharded index too)."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from align import distributed
from align.errors import InvalidInput, MissingInput
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


EXPORT_DTYPES = {"float32": np.float32, "bfloat16": jnp.bfloat16}  # jnp.bfloat16 is a numpy dtype (ml_dtypes)

# What save_hf_dir (and the callers that add to its directories: model cards, reward heads) writes; an
# existing directory holding anything else is not replaced.
_EXPORT_FILES = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.*",
    "README.md",
    "SOURCE.txt",
)


def save_hf_dir(
    model: Decoder,
    path: str | os.PathLike,
    *,
    tokenizer=None,
    generation_config: dict | None = None,
    max_shard_bytes: int = 2 << 30,
    dtype: str = "float32",
) -> Path:
    """Write `model` as a transformers-loadable directory; `tokenizer` is any object with save_pretrained.

    dtype: the stored weights, "float32" or "bfloat16" (half the size; what Gemma checkpoints on the
    Hub use). config.json's `torch_dtype` says which, so transformers loads them as stored.

    The files are written to a temporary sibling directory that then replaces `path` whole: a crash
    leaves the previous export intact, and no file of it (a stale shard index, say) survives a re-export.

    In a multi-process run every process calls it: the parameters are gathered from all hosts (FSDP
    spreads them), process 0 writes, and the others wait until the directory is in place.
    """
    path = Path(path)
    if dtype not in EXPORT_DTYPES:
        raise InvalidInput(f"export dtype {dtype!r}: expected one of {sorted(EXPORT_DTYPES)}")
    flat = flat_params(model)
    params = {k: distributed.host_array(flat[k]).astype(np.float32) for k in sorted(flat)}  # a collective
    if distributed.is_primary():
        _write_replacing(model.config, params, path, tokenizer, generation_config, max_shard_bytes, dtype)
    distributed.barrier("hf-export")
    return path


def _write_replacing(config, params, path: Path, tokenizer, generation_config, max_shard_bytes, dtype):
    _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0o700 would make the export private
        _write_hf_dir(config, params, tmp, tokenizer, generation_config, max_shard_bytes, dtype)
        _replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already unless writing failed


def _check_replaceable(path: Path) -> None:
    if not path.exists():
        return
    if not path.is_dir():
        raise InvalidInput(f"{path} exists and is not a directory: cannot write a Hugging Face export there")
    foreign = sorted(
        p.name
        for p in path.iterdir()
        if p.is_dir() or not any(fnmatch.fnmatch(p.name, pat) for pat in _EXPORT_FILES)
    )
    if foreign:
        raise InvalidInput(
            f"{path} holds files that are not part of a Hugging Face export "
            f"({', '.join(foreign)}): an export replaces its whole directory, so choose an "
            "empty or new one"
        )


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`, swapping out an existing `target` (two renames: a crash in between leaves
    the old export in a `.NAME.old-*` sibling, never a half-written one under `target`)."""
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    target.rename(old / target.name)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _write_hf_dir(
    config: ModelConfig,
    params: dict[str, np.ndarray],
    path: Path,
    tokenizer,
    generation_config: dict | None,
    max_shard_bytes: int,
    dtype: str,
) -> None:
    from safetensors.numpy import save_file

    tensors = params_to_hf(params, config)
    # Rounded once, from the float32 tensors, at the very end: safetensors stores a numpy bfloat16
    # array as BF16.
    tensors = {k: v.astype(EXPORT_DTYPES[dtype]) for k, v in tensors.items()}
    special = {}
    if tokenizer is not None:
        special = {
            k: getattr(tokenizer, k)
            for k in ("bos_token_id", "eos_token_id", "pad_token_id")
            if getattr(tokenizer, k, None) is not None
        }
    (path / "config.json").write_text(
        json.dumps({**to_hf(config, **special), "torch_dtype": dtype}, indent=2)
    )
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
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
        )
    if generation_config is not None:
        (path / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
