"""Model FLOPs of a decoder, for MFU: the arithmetic the model needs, not what an implementation spends.

Per token of a length-T sequence, forward pass (a multiply-add counts 2):

    matmuls    2 * L * (D*N*H + 2*D*K*H + N*H*D + 3*D*F)        q, k, v, o; MLP gate, up, down
    unembed    2 * D * V
    attention  sum over layers of 2 * 2 * N*H * keys(layer)      q.k scores and p.v, per visible key

keys(layer) is the mean number of keys a query sees under the causal mask: (T + 1) / 2 on global
layers, mean_t min(t + 1, W) on sliding-window layers (window W). Masked blocks an implementation
computes anyway, remat's recomputation and elementwise work are not counted (MFU, not hardware
FLOPs utilisation). Training = 3 x forward (the backward pass is two matmuls per forward matmul).
"""

from __future__ import annotations

from align.model.config import ModelConfig


def mean_visible_keys(seq_len: int, window: int | None) -> float:
    """mean over t in [0, T) of min(t + 1, W): keys a causal (windowed) query attends to."""
    T = seq_len
    if window is None or window >= T:
        return (T + 1) / 2
    W = window
    return (W * (W + 1) / 2 + (T - W) * W) / T


def forward_flops_per_token(config: ModelConfig, seq_len: int) -> dict[str, float]:
    """{'matmul', 'unembed', 'attention', 'total'} forward FLOPs per token at sequence length seq_len."""
    c = config
    D, N, K, H, F = c.embed_dim, c.num_heads, c.num_kv_heads, c.head_dim, c.hidden_dim
    per_layer = D * N * H + 2 * D * K * H + N * H * D + 3 * D * F
    matmul = 2.0 * c.num_layers * per_layer
    unembed = 2.0 * D * c.vocab_size
    attention = sum(
        4.0 * N * H * mean_visible_keys(seq_len, c.sliding_window if t == "local" else None)
        for t in c.layer_types
    )
    return {
        "matmul": matmul,
        "unembed": unembed,
        "attention": attention,
        "total": matmul + unembed + attention,
    }


def train_flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """Forward + backward model FLOPs per trained token: 3 x the forward pass."""
    return 3.0 * forward_flops_per_token(config, seq_len)["total"]
