"""The reward model: a decoder backbone + scalar head (align.model.heads.ScoreModel), its pair
rewards, and its HF export and loading.

    rm = build_reward_model(backbone)                 # fresh head (w ~ small, b = 0)
    rewards = pair_rewards(rm, batch)                 # [B, P] for a preference batch [B, P, T]
    save_reward_model(rm, "out/export", tokenizer)    # Hugging Face <Family>ForSequenceClassification
    rm, tok = load_reward_model("out/export")

The export is what `transformers.AutoModelForSequenceClassification` loads: the backbone under
`model.*`, the head as `score.weight` [1, D] (HF's score layer has no bias), `num_labels = 1`, and a
`pad_token_id` (HF pools at the last non-pad token, as ScoreModel does for right-padded rows).
The head bias therefore stays 0 during training: the Bradley-Terry loss only sees reward differences,
so a bias would get no gradient anyway (except from the optional centring term).
config.json also records the ScoreModel's pooling as "align_reward_pool" (POOL_KEY), which
load_reward_model reads back. transformers ignores it and always pools at the last token, so only a
"last" export scores the same there; a "response_mean" export's reward is the mean over the response
tokens of HF's `score(hidden_states[-1])`, which a caller of transformers must compute itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from align import distributed
from align.errors import InvalidInput, MissingInput
from align.model import Decoder
from align.model.heads import POOLS, ScoreModel
from align.training.lora import LoRADecoder, merge_lora

RewardModel = ScoreModel

SEQ_CLS_ARCHITECTURES = {
    "gemma": "GemmaForSequenceClassification",
    "gemma2": "Gemma2ForSequenceClassification",
    "gemma3": "Gemma3TextForSequenceClassification",
    "llama": "LlamaForSequenceClassification",
}
HEAD_BIAS = ("head", "b")  # path of the bias, for optim.excluding
POOL_KEY = "align_reward_pool"  # config.json key of ScoreModel.pool (absent: "last", as HF pools)


def build_reward_model(backbone: Decoder | LoRADecoder, *, seed: int = 0, pool: str = "last") -> ScoreModel:
    return ScoreModel(backbone, rngs=nnx.Rngs(seed), pool=pool)


def response_of(loss_mask: jax.Array) -> jax.Array:
    """Response mask [..., T] of a batch built by align.data (pad_batch, preference_batch) from its
    loss_mask [..., T]: the loss at t is on predicting token t + 1, so the response mask is the loss
    mask shifted right by one. Exact for one document per row whose first token is no response token
    (<bos> leads every reward row)."""
    pad = [(0, 0)] * (loss_mask.ndim - 1) + [(1, 0)]
    return jnp.pad(jnp.asarray(loss_mask)[..., :-1], pad)


def _flat_pairs(batch) -> list[jax.Array | None]:
    """tokens/positions/segment_ids [B, P, T] -> [B*P, T] each, and the response mask [B*P, T] (None
    without a loss_mask: enough for pool="last")."""
    B, P, T = batch["tokens"].shape
    rows = [batch[k].reshape(B * P, T) for k in ("tokens", "positions", "segment_ids")]
    loss_mask = batch.get("loss_mask")
    return rows + [None if loss_mask is None else response_of(loss_mask.reshape(B * P, T))]


def pair_rewards(model: ScoreModel, batch) -> jax.Array:
    """Rewards [B, P] of a preference batch (tokens/positions/segment_ids/loss_mask [B, P, T]);
    P = (chosen, rejected). pool="response_mean" reads the response tokens off loss_mask."""
    B, P, _ = batch["tokens"].shape
    return model(*_flat_pairs(batch)).reshape(B, P)


def pair_pooled_hidden(model: ScoreModel, batch) -> jax.Array:
    """Pooled hidden states [B, P, D] of a preference batch (as pair_rewards pools): the head's input."""
    B, P, _ = batch["tokens"].shape
    return model.pooled_hidden(*_flat_pairs(batch)).reshape(B, P, -1)


def backbone_of(model: ScoreModel) -> Decoder:
    """The plain decoder (LoRA adapters merged in)."""
    return merge_lora(model.backbone) if isinstance(model.backbone, LoRADecoder) else model.backbone


def save_reward_model(model: ScoreModel, path: str | os.PathLike, *, tokenizer=None) -> Path:
    """Write `model` as a HF sequence-classification directory (see the module docstring).

    tokenizer: an align.data.Tokenizer or HF tokenizer (its files are saved and its pad id recorded).
    Every process of a multi-process run calls it (the weights are gathered); process 0 writes.
    """
    from align.model.hf_io import save_hf_dir

    bias = float(distributed.host_array(model.head.b[...]))
    if bias != 0.0:
        raise ValueError(
            f"reward head bias is {bias}, but HF's score layer has no bias; train with the bias "
            "frozen (reward_models.train does) or subtract it from the rewards"
        )
    backbone = backbone_of(model)
    family = backbone.config.family
    if family not in SEQ_CLS_ARCHITECTURES:
        raise ValueError(f"no HF sequence-classification architecture for family {family!r}")
    hf_tok = getattr(tokenizer, "hf", tokenizer)
    score = distributed.host_array(model.head.w[...]).astype(np.float32)[None, :]  # [1, D]
    path = save_hf_dir(backbone, path, tokenizer=hf_tok, max_shard_bytes=1 << 62)  # every process
    if distributed.is_primary():
        _add_score_head(path, score, tokenizer, hf_tok, family, model.pool)
    distributed.barrier("reward-export")
    return path


def _add_score_head(path: Path, score: np.ndarray, tokenizer, hf_tok, family: str, pool: str) -> None:
    """The score layer as a second shard of the export save_hf_dir wrote, and a classifier config.json."""
    from safetensors.numpy import save_file

    # One shard for the backbone, one for the head, joined by an index: transformers reads a lone
    # model.safetensors before any index, so the backbone file must not keep that name.
    backbone_file, score_file = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    os.replace(path / "model.safetensors", path / backbone_file)
    save_file({"score.weight": score}, str(path / score_file), metadata={"format": "pt"})
    from safetensors import safe_open

    with safe_open(str(path / backbone_file), framework="numpy") as f:
        weight_map = dict.fromkeys(f.keys(), backbone_file)
    weight_map["score.weight"] = score_file
    total = sum(os.path.getsize(path / f) for f in (backbone_file, score_file))
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    config = json.loads((path / "config.json").read_text())
    pad_id = getattr(tokenizer, "pad_id", None) if tokenizer is not None else None
    if pad_id is None:
        pad_id = getattr(hf_tok, "pad_token_id", None) if hf_tok is not None else None
    config.update(
        architectures=[SEQ_CLS_ARCHITECTURES[family]],
        num_labels=1,
        id2label={"0": "LABEL_0"},
        label2id={"LABEL_0": 0},
        problem_type="regression",
        pad_token_id=pad_id if pad_id is not None else config.get("pad_token_id", 0),
        **{POOL_KEY: pool},
    )
    (path / "config.json").write_text(json.dumps(config, indent=2))


def is_reward_model_dir(path: str | os.PathLike) -> bool:
    config = Path(path) / "config.json"
    if not config.exists():
        return False
    return any(
        a.endswith("ForSequenceClassification")
        for a in json.loads(config.read_text()).get("architectures", [])
    )


def load_reward_model(
    path: str | os.PathLike, *, param_dtype=jnp.float32, dtype=jnp.float32, with_tokenizer: bool = True
):
    """(ScoreModel, Tokenizer or None) from a directory written by save_reward_model (or any HF
    Gemma/Llama ForSequenceClassification checkpoint with num_labels = 1); the pooling is config.json's
    POOL_KEY, "last" (HF's) when absent."""
    from align.data.tokenizer import load_tokenizer
    from align.model.convert import hf_to_params
    from align.model.hf_config import from_hf
    from align.model.hf_io import read_safetensors_dir
    from align.model.params import from_flat

    path = Path(path)
    if not (path / "config.json").exists():
        raise MissingInput(
            f"reward model {path}: no config.json; expected the export/ directory of an "
            "`align rm` run or a Hugging Face ...ForSequenceClassification checkpoint"
        )
    hf = json.loads((path / "config.json").read_text())
    tensors = read_safetensors_dir(path)
    if "score.weight" not in tensors:
        raise InvalidInput(f"{path}: no score.weight: not a sequence-classification checkpoint")
    score = tensors.pop("score.weight")
    if score.shape[0] != 1:
        raise InvalidInput(f"{path}: score.weight has {score.shape[0]} labels; a reward model has 1")
    pool = hf.get(POOL_KEY, "last")
    if pool not in POOLS:
        raise InvalidInput(f"{path / 'config.json'}: {POOL_KEY}: {pool!r}, expected one of {POOLS}")
    config = from_hf(hf)
    backbone = from_flat(
        config, hf_to_params(tensors, config), param_dtype=param_dtype, dtype=dtype, source=str(path)
    )
    model = build_reward_model(backbone, pool=pool)
    model.head.w[...] = jnp.asarray(score[0], model.head.w[...].dtype)
    model.head.b[...] = jnp.zeros((), model.head.b[...].dtype)
    tokenizer = load_tokenizer(path) if with_tokenizer else None
    return model, tokenizer


__all__ = [
    "HEAD_BIAS",
    "POOL_KEY",
    "backbone_of",
    "pair_pooled_hidden",
    "response_of",
    "RewardModel",
    "ScoreModel",
    "build_reward_model",
    "is_reward_model_dir",
    "load_reward_model",
    "pair_rewards",
    "save_reward_model",
]
