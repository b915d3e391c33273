"""Supervised (SFT) loss: masked token-level negative log-likelihood.

Shapes: B batch, T time, V vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def nll_loss(
    token_lp: jax.Array,
    loss_mask: jax.Array,
    *,
    logits: jax.Array | None = None,
    targets: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Token-mean negative log-likelihood over the whole batch.

        loss = sum_{b,t} -token_lp[b,t] * mask[b,t] / max(sum_{b,t} mask[b,t], 1)

    Normalisation: every supervised token in the batch weighs the same, so a long answer counts
    more than a short one (not a mean of per-sequence means). This is the normalisation of
    `torch.nn.functional.cross_entropy(ignore_index=-100, reduction="mean")`, of transformers'
    `ForCausalLMLoss` and of TRL's `SFTTrainer` (`-log_probs.sum() / label_mask.sum()`). A batch
    with no supervised token gives loss 0, not NaN. With gradient accumulation, divide the summed
    loss by the token count of the whole accumulated batch instead (`n_tokens` is returned for that).

    Args:
      token_lp: [B, T] float log p(target_t | prefix), from `token_logprobs` (already shifted).
      loss_mask: [B, T] 1 where the token is supervised (the response), 0 for prompt and padding.
      logits: optional [B, T, V]; with `targets`, adds `accuracy` = masked mean of argmax == target.
      targets: optional [B, T] int ids.

    Returns:
      (loss, {"loss", "n_tokens", "accuracy" (when logits and targets are given)}).
    """
    if token_lp.shape != loss_mask.shape:
        raise ValueError(f"nll_loss: token_lp {token_lp.shape} and loss_mask {loss_mask.shape} differ")
    mask = loss_mask.astype(jnp.float32)
    n_tokens = jnp.sum(mask)
    denom = jnp.maximum(n_tokens, 1.0)
    loss = -jnp.sum(token_lp.astype(jnp.float32) * mask) / denom
    metrics = {"loss": loss, "n_tokens": n_tokens}
    if (logits is None) != (targets is None):
        raise ValueError("nll_loss: accuracy needs both `logits` and `targets`, got only one")
    if logits is not None:
        if logits.shape[:-1] != token_lp.shape or targets.shape != token_lp.shape:
            raise ValueError(
                f"nll_loss: logits {logits.shape} / targets {targets.shape} do not match token_lp "
                f"{token_lp.shape}"
            )
        correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
        metrics["accuracy"] = jnp.sum(correct * mask) / denom
    return loss, metrics
