"""Logical axis names carried by every parameter and activation.

Shape letters (used in einsum strings and `# [B, T, N, H]` comments across the code base):
  B batch, T query/time length, S key/cache length, D model dim, N query heads, K kv heads,
  G = N // K query heads per kv head, H head dim, F MLP hidden, V vocab, P chosen/rejected pair,
  L layers, C chunk.

The model only names *logical* axes; `align.model.sharding.LOGICAL_RULES` is the one table that maps
them onto mesh axes. The model never names a mesh axis.
"""

BATCH = "batch"
LENGTH = "length"
EMBED = "embed"
VOCAB = "vocab"
HEADS = "heads"
KV_HEADS = "kv_heads"
HEAD_DIM = "head_dim"
MLP = "mlp"
NORM = None  # norm scales are tiny: always replicated

# Activations name their own axes, mapped apart from the weights' (a weight's EMBED splits over fsdp; the
# residual stream's rows split over data x fsdp and its model dim stays whole).
ACT_BATCH = "activation_batch"
ACT_LENGTH = "activation_length"
ACT_EMBED = "activation_embed"
RESIDUAL = (ACT_BATCH, ACT_LENGTH, ACT_EMBED)  # [B, T, D] between decoder blocks
