"""Frozen model config with named presets for the Gemma 1/2/3 and Llama families."""

from __future__ import annotations

import dataclasses
from typing import Literal

LayerType = Literal["global", "local"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything the decoder needs to know about an architecture, and nothing else."""

    vocab_size: int
    embed_dim: int  # D
    num_layers: int  # L
    num_heads: int  # N
    num_kv_heads: int  # K
    head_dim: int  # H
    hidden_dim: int  # F
    layer_types: tuple[LayerType, ...]  # one per layer: sliding-window ("local") or full ("global")
    sliding_window: int | None = None  # keys with q_pos - k_pos < window are visible on local layers
    rope_base_global: float = 10_000.0
    rope_base_local: float = 10_000.0
    rope_scale_global: float = 1.0  # linear position scaling (Gemma 3 >= 4B uses 8.0)
    rope_scale_local: float = 1.0
    query_pre_attn_scalar: float | None = None  # queries are scaled by this**-0.5 (default: head_dim)
    attn_logit_softcap: float | None = None
    final_logit_softcap: float | None = None
    activation: Literal["gelu_tanh", "silu"] = "gelu_tanh"
    norm_eps: float = 1e-6
    norm_offset: float = 1.0  # Gemma's RMSNorm scales by (1 + w); Llama's by w
    qk_norm: bool = False  # Gemma 3 RMS-normalises q and k per head
    post_norms: bool = False  # Gemma 2/3 normalise the attention and MLP outputs too
    scale_embeddings: bool = True  # Gemma multiplies embeddings by sqrt(D)
    tie_embeddings: bool = True
    max_seq_len: int = 8192
    family: str = "gemma3"  # name of the HF architecture, for export

    def __post_init__(self):
        if len(self.layer_types) != self.num_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_layers} layers")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if "local" in self.layer_types and not self.sliding_window:
            raise ValueError("local layers need a sliding_window")

    @property
    def num_groups(self) -> int:  # G
        return self.num_heads // self.num_kv_heads

    @property
    def query_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    # ---- presets -------------------------------------------------------------------------------

    @staticmethod
    def gemma3_pattern(num_layers: int, period: int = 6) -> tuple[LayerType, ...]:
        """Gemma 3: five local layers, then one global, repeated."""
        return tuple("global" if (i + 1) % period == 0 else "local" for i in range(num_layers))

    @classmethod
    def tiny(cls, vocab_size: int = 512) -> "ModelConfig":
        """A 2-layer Gemma-3-shaped model for unit tests (one local, one global layer)."""
        return cls(
            vocab_size=vocab_size,
            embed_dim=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            head_dim=16,
            hidden_dim=128,
            layer_types=("local", "global"),
            sliding_window=4,
            rope_base_global=1e6,
            rope_base_local=1e4,
            query_pre_attn_scalar=16,
            qk_norm=True,
            post_norms=True,
            max_seq_len=512,
        )

    @classmethod
    def gemma3_270m(cls) -> "ModelConfig":
        return cls(
            vocab_size=262_144,
            embed_dim=640,
            num_layers=18,
            num_heads=4,
            num_kv_heads=1,
            head_dim=256,
            hidden_dim=2048,
            layer_types=cls.gemma3_pattern(18),
            sliding_window=512,
            rope_base_global=1e6,
            rope_base_local=1e4,
            query_pre_attn_scalar=256,
            qk_norm=True,
            post_norms=True,
            max_seq_len=32_768,
        )

    @classmethod
    def gemma3_1b(cls) -> "ModelConfig":
        return cls(
            vocab_size=262_144,
            embed_dim=1152,
            num_layers=26,
            num_heads=4,
            num_kv_heads=1,
            head_dim=256,
            hidden_dim=6912,
            layer_types=cls.gemma3_pattern(26),
            sliding_window=512,
            rope_base_global=1e6,
            rope_base_local=1e4,
            query_pre_attn_scalar=256,
            qk_norm=True,
            post_norms=True,
            max_seq_len=32_768,
        )

    @classmethod
    def gemma2_2b(cls) -> "ModelConfig":
        return cls(
            vocab_size=256_000,
            embed_dim=2304,
            num_layers=26,
            num_heads=8,
            num_kv_heads=4,
            head_dim=256,
            hidden_dim=9216,
            layer_types=tuple("local" if i % 2 == 0 else "global" for i in range(26)),
            sliding_window=4096,
            query_pre_attn_scalar=256,
            attn_logit_softcap=50.0,
            final_logit_softcap=30.0,
            post_norms=True,
            max_seq_len=8192,
            family="gemma2",
        )

    @classmethod
    def gemma2_9b(cls) -> "ModelConfig":
        return cls(
            vocab_size=256_000,
            embed_dim=3584,
            num_layers=42,
            num_heads=16,
            num_kv_heads=8,
            head_dim=256,
            hidden_dim=14_336,
            layer_types=tuple("local" if i % 2 == 0 else "global" for i in range(42)),
            sliding_window=4096,
            query_pre_attn_scalar=256,
            attn_logit_softcap=50.0,
            final_logit_softcap=30.0,
            post_norms=True,
            max_seq_len=8192,
            family="gemma2",
        )

    @classmethod
    def gemma2_27b(cls) -> "ModelConfig":
        """Queries are scaled by (D / N)**-0.5 = 144**-0.5, not head_dim**-0.5 (Gemma 2 27B only)."""
        return cls(
            vocab_size=256_000,
            embed_dim=4608,
            num_layers=46,
            num_heads=32,
            num_kv_heads=16,
            head_dim=128,
            hidden_dim=36_864,
            layer_types=tuple("local" if i % 2 == 0 else "global" for i in range(46)),
            sliding_window=4096,
            query_pre_attn_scalar=144,
            attn_logit_softcap=50.0,
            final_logit_softcap=30.0,
            post_norms=True,
            max_seq_len=8192,
            family="gemma2",
        )

    @classmethod
    def gemma_2b(cls) -> "ModelConfig":
        return cls(
            vocab_size=256_000,
            embed_dim=2048,
            num_layers=18,
            num_heads=8,
            num_kv_heads=1,
            head_dim=256,
            hidden_dim=16_384,
            layer_types=("global",) * 18,
            max_seq_len=8192,
            family="gemma",
        )

    @classmethod
    def llama3_1b(cls) -> "ModelConfig":
        """Llama-3.2-1B shape (its llama3 rope scaling is not modelled: use for random-weight benchmarks)."""
        return cls(
            vocab_size=128_256,
            embed_dim=2048,
            num_layers=16,
            num_heads=32,
            num_kv_heads=8,
            head_dim=64,
            hidden_dim=8192,
            layer_types=("global",) * 16,
            rope_base_global=500_000.0,
            activation="silu",
            norm_eps=1e-5,
            norm_offset=0.0,
            scale_embeddings=False,
            max_seq_len=8192,
            family="llama",
        )


PRESETS = {
    "tiny": ModelConfig.tiny,
    "gemma3_270m": ModelConfig.gemma3_270m,
    "gemma3_1b": ModelConfig.gemma3_1b,
    "gemma2_2b": ModelConfig.gemma2_2b,
    "gemma2_9b": ModelConfig.gemma2_9b,
    "gemma2_27b": ModelConfig.gemma2_27b,
    "gemma_2b": ModelConfig.gemma_2b,
    "llama3_1b": ModelConfig.llama3_1b,
}
