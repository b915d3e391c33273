"""Decoder(attn_impl="cudnn"): cuDNN's fused attention against the XLA einsum path.

The kernel itself needs an NVIDIA GPU (a lent device: `JAX_PLATFORMS=cuda pytest
tests/model/test_attention_cudnn.py`). On CPU the same parity and mask checks run the cuDNN path with
jax's reference implementation of the same call (`jax.nn.dot_product_attention(...,
implementation="xla")`): that checks what the path asks of the kernel (scale, causality, the window
as (window - 1, 0), the document mask), leaving only the kernel's own numbers to the GPU run.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.training.fused_nll import chunked_weighted_nll

ON_GPU = jax.default_backend() == "gpu"


@pytest.fixture
def cudnn_call(monkeypatch):
    """On a GPU, nothing: the kernel runs. Elsewhere the path's dot_product_attention call is routed to
    jax's reference implementation with the same arguments; yields the calls' keyword arguments."""
    from align.model import attention

    calls, real = [], jax.nn.dot_product_attention

    def reference(*args, **kwargs):
        assert kwargs["implementation"] == "cudnn"
        calls.append(kwargs)
        return real(*args, **{**kwargs, "implementation": "xla"})

    if not ON_GPU:
        monkeypatch.setattr(attention.jax.nn, "dot_product_attention", reference)
    yield calls


def _config():
    # gemma3-270m's attention shape (MQA, 4 query heads of 256) at toy width, window 16 < T.
    return ModelConfig.tiny().replace(
        embed_dim=128,
        num_heads=4,
        num_kv_heads=1,
        head_dim=256,
        hidden_dim=256,
        sliding_window=16,
        query_pre_attn_scalar=256,
    )


def _packed_batch(T=128):
    """Row 0: two documents then padding; row 1: one document. Positions restart per document."""
    seg = np.zeros((2, T), np.int32)
    seg[0, :50], seg[0, 50:110], seg[1] = 1, 2, 1
    pos = np.zeros((2, T), np.int32)
    pos[0, :50], pos[0, 50:110], pos[1] = np.arange(50), np.arange(60), np.arange(T)
    tokens = np.random.default_rng(0).integers(3, 512, (2, T)).astype(np.int32) * (seg > 0)
    return tokens, pos, seg


def _loss_and_grads(cfg, impl, dtype, batch):
    tokens, pos, seg = batch
    model = Decoder(
        cfg, rngs=nnx.Rngs(0), param_dtype=jnp.float32, dtype=dtype, attn_chunk=None, attn_impl=impl
    )
    weights = jnp.asarray((seg > 0) & (np.roll(seg, -1, 1) == seg), jnp.float32)

    def loss_fn(m):
        out = m(tokens, pos, seg, return_logits=False)
        nll = chunked_weighted_nll(
            out.hidden, m.unembed_matrix(), jnp.roll(tokens, -1, 1), weights, chunk_size=64
        )
        return nll / weights.sum(), out.hidden

    # jitted: run eagerly, each of the hundreds of primitives compiles its own GPU kernel first
    (loss, hidden), grads = nnx.jit(nnx.value_and_grad(loss_fn, has_aux=True))(model)
    return loss, hidden.astype(jnp.float32), jax.tree.leaves(nnx.state(grads, nnx.Param))


def test_cudnn_attention_matches_xla_on_packed_rows_with_windows(cudnn_call):
    cfg, batch = _config(), _packed_batch()
    real = batch[2] > 0  # padding queries' outputs are not defined by the cuDNN path
    ref_loss, ref_h, ref_g = _loss_and_grads(cfg, "xla", jnp.float32, batch)
    xla_loss, xla_h, xla_g = _loss_and_grads(cfg, "xla", jnp.bfloat16, batch)
    dnn_loss, dnn_h, dnn_g = _loss_and_grads(cfg, "cudnn", jnp.bfloat16, batch)

    def err(h, g):  # hidden on real tokens, and the gradient's relative error, against float32 XLA
        dh = float(jnp.max(jnp.abs(h - ref_h)[real]))
        dg = max(float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) for a, b in zip(g, ref_g))
        return dh, dg

    (xla_dh, xla_dg), (dnn_dh, dnn_dg) = err(xla_h, xla_g), err(dnn_h, dnn_g)
    # cuDNN in bf16 is as close to the float32 reference as XLA in bf16 is (rounding alone), and a
    # wrong mask (window, causality, document boundary) would be far off: the gap is checked too.
    assert dnn_dh <= 2 * xla_dh + 1e-2, (dnn_dh, xla_dh)
    assert dnn_dg <= 2 * xla_dg + 1e-2, (dnn_dg, xla_dg)
    assert abs(float(dnn_loss - ref_loss)) <= 2 * abs(float(xla_loss - ref_loss)) + 1e-3
    if not ON_GPU:  # both layer kinds went through the call: local with its window, global without
        windows = {c["local_window_size"] for c in cudnn_call}
        assert windows == {(cfg.sliding_window - 1, 0), None}, windows


def test_cudnn_attention_sees_the_window_and_document_boundary(cudnn_call):
    """Changing a token only moves outputs its mask lets see it: none before it, none in another
    document, and on a local layer none beyond the window (probed with a local-only model)."""
    cfg = _config().replace(num_layers=1, layer_types=("local",))
    tokens, pos, seg = _packed_batch()
    model = Decoder(cfg, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, attn_chunk=None, attn_impl="cudnn")
    hidden = nnx.jit(lambda m, t: m(t, pos, seg, return_logits=False).hidden)
    base = hidden(model, tokens)
    changed = tokens.copy()
    changed[1, 40] = (changed[1, 40] + 7) % 512
    moved = np.asarray(jnp.any(hidden(model, changed) != base, axis=-1)[1])
    assert not moved[:40].any()  # causal
    assert moved[
        40 : 40 + cfg.sliding_window
    ].all()  # inside the window (the residual stream, then attention)
    assert not moved[40 + cfg.sliding_window :].any()  # one local layer: nothing past the window

    changed = tokens.copy()
    changed[0, 10] = (changed[0, 10] + 7) % 512  # document 1 of row 0
    moved = np.asarray(jnp.any(hidden(model, changed) != base, axis=-1)[0])
    assert not moved[50:110].any()  # document 2 never sees document 1


def test_cudnn_attention_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="impl must be one of"):
        Decoder(ModelConfig.tiny(), rngs=nnx.Rngs(0), attn_impl="flash")
    with pytest.raises(ValueError, match="soft-capping"):
        Decoder(ModelConfig.tiny().replace(attn_logit_softcap=50.0), rngs=nnx.Rngs(0), attn_impl="cudnn")
    model = Decoder(ModelConfig.tiny(), rngs=nnx.Rngs(0), dtype=jnp.float32, attn_impl="cudnn")
    tokens = jnp.ones((1, 8), jnp.int32)
    with pytest.raises(ValueError, match="bfloat16 or float16"):
        model(tokens, jnp.arange(8)[None], tokens)


def test_a_shape_cudnn_refuses_falls_back_to_xla_with_a_warning(monkeypatch):
    """jax raises NotImplementedError while tracing for shapes the kernel does not take (odd T with a
    mask, head dims over 256, ...): that pass then runs XLA's attention, same numbers, and says so."""
    from align.model import attention

    def refuse(*args, **kwargs):
        raise NotImplementedError("Unsupported sequence length Q 7, KV 7.")

    monkeypatch.setattr(attention.jax.nn, "dot_product_attention", refuse)
    cfg = ModelConfig.tiny()
    tokens = np.arange(1, 15, dtype=np.int32).reshape(2, 7)
    pos, seg = np.tile(np.arange(7, dtype=np.int32), (2, 1)), np.ones((2, 7), np.int32)
    xla = Decoder(cfg, rngs=nnx.Rngs(0), dtype=jnp.bfloat16).hidden(tokens, pos, seg)
    with pytest.warns(RuntimeWarning, match="XLA's attention runs it instead"):
        dnn = Decoder(cfg, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, attn_impl="cudnn").hidden(tokens, pos, seg)
    np.testing.assert_array_equal(np.asarray(dnn, np.float32), np.asarray(xla, np.float32))


def test_cudnn_path_under_remat_and_a_sharded_mesh_matches_xla(cudnn_call):
    """The path's wiring under remat and under data x fsdp x tensor sharding: same loss and gradients as
    XLA attention unsharded. (On CPU the call runs jax's reference implementation, so this checks the
    path, not cuDNN's own partitioning of the kernel; on one GPU only the remat run applies.)"""
    from align.model.sharding import MeshConfig, batch_sharding, make_mesh, shard_model

    cfg = _config().replace(num_heads=4, num_kv_heads=2, head_dim=64, query_pre_attn_scalar=64)
    tokens, pos, seg = (np.tile(a, (2, 1)) for a in _packed_batch())  # B 4
    targets, weights = np.roll(tokens, -1, 1), ((seg > 0) & (np.roll(seg, -1, 1) == seg)).astype(np.float32)

    def loss_fn(m, t, p, s):
        out = m(t, p, s, return_logits=False)
        return chunked_weighted_nll(out.hidden, m.unembed_matrix(), targets, weights, chunk_size=64)

    def run(impl, remat, mesh=None):
        model = Decoder(
            cfg, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, attn_chunk=None, attn_impl=impl, remat=remat
        )
        args = (tokens, pos, seg)
        if mesh is not None:
            model = shard_model(model, mesh)
            args = tuple(jax.device_put(a, batch_sharding(mesh)) for a in args)
        loss, grads = nnx.jit(nnx.value_and_grad(loss_fn))(model, *args)
        return float(loss), [np.asarray(g, np.float32) for g in jax.tree.leaves(nnx.state(grads, nnx.Param))]

    ref_loss, ref_g = run("xla", remat=False)
    runs = [(True, None)]
    if jax.device_count() >= 8:  # tests/conftest.py gives the CPU 8 fake devices
        mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
        runs += [(False, mesh), (True, mesh)]
    for remat, m in runs:
        loss, grads = run("cudnn", remat, m)
        assert abs(loss - ref_loss) <= 2e-2 * abs(ref_loss), (remat, loss, ref_loss)
        for a, b in zip(grads, ref_g):
            assert np.linalg.norm(a - b) <= 3e-2 * np.linalg.norm(b) + 1e-6, (remat, m)
    if not ON_GPU:  # both layer kinds went through the call in every run
        assert len(cudnn_call) >= 2 * len(runs), len(cudnn_call)
