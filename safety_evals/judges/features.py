"""Frozen-backbone features for the judges: pooled hidden states at a few layers, cached on disk.

A judge's input row is rendered to one text (`render`), encoded with <bos>, cut to `max_tokens`
(the head of the text: a refusal or an answer shows itself early; a passage keeps its start) and
run through the frozen decoder. The feature vector of a row is, for each layer in `layers`
(0 = embeddings, L = the final-normed output), the mean over its tokens and the state at its last
token, concatenated: [2 * len(layers) * D]. Intermediate layers carry more linearly readable
content than the last one, which is tuned to predict the next token.

`backbone="lexical"` replaces the model by hashed word n-gram counts (no model; a baseline).
`ngram_words=N` appends those counts over the text's first N words to the backbone's features: the
words a reply is made of, beside what the backbone makes of its first tokens (the refusal judge v3:
docs/judges.md).

Features are cached per (backbone spec, recipe, text) under `cache_dir()/features`, one .npy per
text keyed by its sha256 (align.npy_cache), so refitting a head or re-running validation never runs
the backbone twice on the same row (feature extraction is the whole cost on a CPU: ~10-30 rows/s).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from align.npy_cache import NpyCache


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a text becomes a feature vector (part of a judge's identity)."""

    backbone: str = "gemma3-270m"
    layers: tuple[int, ...] = (9, 18)
    max_tokens: int = 160
    version: int = 1  # bump when the extraction code changes the numbers
    ngram_words: int = 0  # > 0: hashed word n-grams of the first ngram_words words appended

    def key(self) -> str:
        fields = dataclasses.asdict(self)
        if not self.ngram_words:  # recipes without n-grams keep the keys (and judge hashes) they had
            del fields["ngram_words"]
        return json.dumps(fields, sort_keys=True)


LEXICAL = "lexical"  # the backbone-free alternative: hashed word n-gram counts
# the truth judge's comparison with TruthfulQA's reference answers (judges/references.py): it reads
# the row's reference lists, not a rendered text, so ProbeJudge computes it instead of the store
REFERENCES = "references"


def cache_dir() -> Path:
    return Path(os.environ.get("ALIGN_CACHE_DIR", Path.home() / ".cache" / "align"))


def _text_key(recipe: Recipe, text: str) -> str:
    return hashlib.sha256((recipe.key() + "\x00" + text).encode()).hexdigest()


class FeatureStore:
    """texts -> features [n, F] through the backbone, each text computed once and kept on disk."""

    def __init__(self, recipe: Recipe, root: Path | None = None, batch_size: int = 8):
        self.recipe = recipe
        # the backbone's states are keyed without the n-grams: a recipe that adds them reuses the
        # states a plain recipe cached
        self._states = dataclasses.replace(recipe, ngram_words=0)
        self.files = NpyCache((root or cache_dir()) / "features", fanout=2)
        self.batch_size = batch_size
        self._extractor: Callable[[list[str]], np.ndarray] | None = None

    def __call__(
        self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        if self.recipe.backbone == LEXICAL:  # cheaper to recompute than to read back
            return lexical_features(texts, self.recipe.max_tokens)
        x = self._backbone(texts, progress)
        if self.recipe.ngram_words:  # [n, F + LEXICAL_DIM]
            x = np.concatenate([x, lexical_features(texts, self.recipe.ngram_words)], axis=1)
        return x

    def _backbone(self, texts: Sequence[str], progress) -> np.ndarray:
        key = {t: _text_key(self._states, t) for t in texts}
        keys = [key[t] for t in texts]
        todo = sorted((t for t in key if key[t] not in self.files), key=len)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for t, f in zip(chunk, self.extract(chunk)):
                self.files.put(key[t], f.astype(np.float32))
            if progress:
                progress(min(start + self.batch_size, len(todo)), len(todo))
        return np.stack([self.files.get(k) for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def extract(self, texts: list[str]) -> np.ndarray:
        if self._extractor is None:
            self._extractor = _backbone_extractor(self._states)
        return self._extractor(texts)


def _bucket(n: int) -> int:
    """Pad lengths to a few shapes (jit compiles once per shape)."""
    return next(b for b in (32, 64, 128, 256, 512) if b >= n) if n <= 512 else n


# One backbone (and one compiled pooling function) per recipe for the whole process: the shipped
# judges share a recipe, so factuality's truth and info judges and every other suite's judge reuse the
# weights instead of loading gemma3-270m once per judge.
@functools.lru_cache(maxsize=2)
def _backbone_extractor(recipe: Recipe) -> Callable[[list[str]], np.ndarray]:
    import align

    loaded = align.load(recipe.backbone)
    tok, model = loaded.tokenizer, loaded.model
    pooled = _pooling_fn(model, recipe.layers)

    def run(texts: list[str]) -> np.ndarray:
        ids = [tok.encode(t, add_bos=True)[: recipe.max_tokens] for t in texts]
        B, T = len(ids), _bucket(max(len(i) for i in ids))
        tokens = np.zeros((B, T), np.int32)
        seg = np.zeros((B, T), np.int32)
        for b, row in enumerate(ids):
            tokens[b, : len(row)], seg[b, : len(row)] = row, 1
        pos = np.broadcast_to(np.arange(T, dtype=np.int32), (B, T))
        return np.asarray(pooled(tokens, pos, seg))

    return run


def _pooling_fn(model, layers: tuple[int, ...]):
    """jit: (tokens, positions, segment_ids) [B, T] -> [B, 2 * len(layers) * D] float32."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, state = nnx.split(model)

    # the weights are an argument, not a closure: closed-over arrays become HLO constants (a copy
    # of the model per compiled shape, and minutes of constant folding)
    @jax.jit
    def pooled_fn(state, tokens, positions, seg):
        m = nnx.merge(graphdef, state)
        mask = (seg != 0).astype(jnp.float32)[..., None]  # [B, T, 1]
        last = jnp.maximum(jnp.sum(seg != 0, axis=-1) - 1, 0)  # [B]
        out = []

        def take(h):
            h = h.astype(jnp.float32)
            mean = jnp.sum(h * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)  # [B, D]
            out.extend([mean, jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]])

        for h in m.layer_states(tokens, positions, seg, sorted(layers)):  # [B, T, D] each, shallow first
            take(h)
        return jnp.concatenate(out, axis=-1)

    return functools.partial(pooled_fn, state)


LEXICAL_DIM = 1 << 11


def lexical_features(texts: Sequence[str], max_words: int) -> np.ndarray:
    """[n, LEXICAL_DIM] log(1 + count) of hashed lower-cased word unigrams and bigrams of each text's
    first `max_words` words (the lexical baseline: what string matching can see, learned)."""
    out = np.zeros((len(texts), LEXICAL_DIM), np.float32)
    for i, text in enumerate(texts):
        words = text.lower().split()[:max_words]
        for gram in words + [a + " " + b for a, b in zip(words, words[1:])]:
            out[i, int(hashlib.md5(gram.encode()).hexdigest()[:8], 16) % LEXICAL_DIM] += 1.0
    return np.log1p(out)
