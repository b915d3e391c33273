"""Train-step MFU and generation throughput on whatever device JAX finds (made for a lent GPU).

    python benchmarks/mfu.py                                  # gemma3_270m and gemma3_1b, bf16, B8 x T2048
    python benchmarks/mfu.py --presets gemma3_1b --shapes 4x4096 --loss-chunks 4096 --attn-chunks 0
    python benchmarks/mfu.py --attn-impl xla cudnn --profile /tmp/trace    # + where the GPU time goes
    python benchmarks/mfu.py --presets tiny --shapes 2x64 --gen-batches 2 --new-tokens 8   # CPU smoke run

Train rows time the real SFT step (`pipelines.stages.sft.sft_loss` + AdamW + clipping through
`align.training.make_train_step`) on random weights and random tokens, every token supervised:

    MFU = steps/s * B * T * train_flops_per_token(config, T) / peak

with the model FLOPs of `align.model.flops` (6 x matmul parameters + causal attention; no remat
recompute, no masked blocks) and `peak` the card's dense bf16 datasheet rate (--peak-tflops to
override). The measured rate of one large bf16 matmul is printed first as the practical ceiling.
Weights are float32 (exact Adam updates), activations --dtype. Generation rows decode greedily
with no stop token, so every row produces exactly B * new_tokens tokens; weights, activations and
the KV cache in --dtype; compilation is excluded (one untimed call of the same shape).
`--attn-impl cudnn` runs the training pass's attention as cuDNN's fused kernel (Decoder attn_impl);
`--profile DIR` traces a few more steps of each train case and prints device time by category and
kernel (benchmarks/profile_summary.py). One row per case; no pass/fail.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Dense bf16 datasheet rates (FLOP/s) by a substring of jax's device_kind; the SXM parts.
PEAKS = {
    "H200": 989.4e12,
    "H100": 989.4e12,
    "A100": 312e12,
    "L4": 121e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6": 918e12,
}


def device_peak(kind: str) -> float | None:
    return next((v for k, v in PEAKS.items() if k.lower() in kind.lower()), None)


def matmul_rate(n: int, reps: int = 10) -> float:
    """Measured FLOP/s of an [n, n] x [n, n] bf16 matmul (random data), median of `reps`."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    a, b = (jax.random.normal(jax.random.PRNGKey(i), (n, n), jnp.bfloat16) for i in (1, 2))
    f = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(f(a, b))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, b))
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / float(np.median(times))


def config_for(preset: str):
    from align.model.config import PRESETS

    return PRESETS[preset]()


def random_model(config, *, param_dtype, dtype, **kwargs):
    """A Decoder with normal(0, 0.02) weights, filled leaf by leaf by one small jitted kernel per
    distinct shape. (The whole initialiser compiled as one jit program, as `load_model` once did,
    was still compiling after minutes for gemma3_1b on a GPU; filled per shape, the same case compiled and ran
    its first two steps in under a minute. `load_model` now builds eagerly; benchmarks/RESULTS.md.)"""
    import functools
    import itertools

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from align.model import Decoder

    graphdef, abstract = nnx.split(
        nnx.eval_shape(
            lambda: Decoder(config, rngs=nnx.Rngs(0), param_dtype=param_dtype, dtype=dtype, **kwargs)
        )
    )

    @functools.partial(jax.jit, static_argnums=(1, 2))
    def fill(key, shape, dt):
        return (0.02 * jax.random.normal(key, shape, jnp.float32)).astype(dt)

    keys = (jax.random.PRNGKey(i) for i in itertools.count())
    state = jax.tree.map(lambda leaf: fill(next(keys), leaf.shape, leaf.dtype), abstract)
    return nnx.merge(graphdef, state)


def train_case(
    preset,
    batch,
    seq,
    dtype,
    loss_chunk,
    attn_chunk,
    remat,
    steps,
    warmup,
    attn_impl="xla",
    profile_dir=None,
    profile_steps=3,
) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from align.model.flops import train_flops_per_token
    from align.training import OptimConfig, create_train_state, make_optimizer, make_train_step
    from pipelines.stages.sft import sft_loss

    config = config_for(preset)
    model = random_model(
        config,
        param_dtype=jnp.float32,
        dtype=dtype,
        remat=remat,
        attn_chunk=attn_chunk or None,
        attn_impl=attn_impl,
    )
    optimizer = make_optimizer(
        OptimConfig(
            learning_rate=1e-5, total_steps=10_000, weight_decay=0.0, clip_norm=1.0, schedule="constant"
        )
    )
    state = create_train_state(model, optimizer)
    del model
    tokens = np.random.default_rng(0).integers(3, config.vocab_size, (batch, seq)).astype(np.int32)
    batch_arrays = {
        "tokens": tokens,
        "positions": np.tile(np.arange(seq, dtype=np.int32), (batch, 1)),
        "segment_ids": np.ones((batch, seq), np.int32),
        "targets": np.roll(tokens, -1, 1),
        "loss_mask": np.ones((batch, seq), np.float32),
    }
    batch_arrays = jax.device_put(batch_arrays)
    step = make_train_step(sft_loss(loss_chunk), optimizer)
    t0 = time.perf_counter()
    for _ in range(warmup):
        state, metrics = step(state, batch_arrays)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch_arrays)
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - t0) / steps
    flops = batch * seq * train_flops_per_token(config, seq)
    out = {
        "step_s": step_s,
        "tokens_per_s": batch * seq / step_s,
        "model_tflop_per_step": flops / 1e12,
        "achieved_tflops": flops / step_s / 1e12,
        "first_steps_s": compile_s,
        "loss": float(metrics["loss"]),
        "finite": bool(metrics["finite"]),
    }
    if profile_dir:
        from benchmarks.profile_summary import format_summary, summarize

        trace_dir = Path(profile_dir) / f"{preset}_{batch}x{seq}_{attn_impl}_{attn_chunk}_{loss_chunk}"
        with jax.profiler.trace(str(trace_dir)):
            for _ in range(profile_steps):
                state, metrics = step(state, batch_arrays)
            jax.block_until_ready(metrics)
        summary = summarize(trace_dir, profile_steps)
        print(format_summary(summary), flush=True)
        out["profile"] = {k: summary[k] for k in ("busy_ms_per_step", "categories", "kernels")}
    del state, metrics
    gc.collect()
    return out


def gen_case(preset, batch, prompt_len, new_tokens, dtype, repeats) -> dict:
    import jax
    import numpy as np

    from align.sampling import SamplingConfig, generate

    config = config_for(preset)
    model = random_model(config, param_dtype=dtype, dtype=dtype)
    prompt = np.random.default_rng(1).integers(3, config.vocab_size, (batch, prompt_len)).astype(np.int32)
    lengths = np.full((batch,), prompt_len, np.int32)
    cfg = SamplingConfig(max_new_tokens=new_tokens)  # greedy, no stop ids: exactly new_tokens each
    t0 = time.perf_counter()
    jax.block_until_ready(generate(model, prompt, lengths, cfg, cache_dtype=dtype).tokens)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(generate(model, prompt, lengths, cfg, cache_dtype=dtype).tokens)
        times.append(time.perf_counter() - t0)
    best = min(times)
    del model
    gc.collect()
    return {
        "tokens_per_s": batch * new_tokens / best,
        "ms_per_token_step": 1e3 * best / new_tokens,
        "seconds": best,
        "first_call_s": compile_s,
    }


def shape(text: str) -> tuple[int, int]:
    try:
        b, t = text.lower().split("x")
        return int(b), int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected BxT, e.g. 8x2048") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--presets", nargs="+", default=["gemma3_270m", "gemma3_1b"], help="align.model.config presets"
    )
    p.add_argument(
        "--shapes", nargs="+", type=shape, default=[(8, 2048)], help="train batch x length, e.g. 8x2048"
    )
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="activation dtype")
    p.add_argument("--loss-chunks", nargs="+", type=int, default=[4096], help="tokens per logits tile")
    p.add_argument(
        "--attn-chunks", nargs="+", type=int, default=[1024], help="query chunk; 0 = dense attention"
    )
    p.add_argument(
        "--attn-impl",
        nargs="+",
        default=["xla"],
        choices=["xla", "cudnn"],
        help="attention of the training pass (Decoder attn_impl); cudnn needs a GPU",
    )
    p.add_argument("--remat", action="store_true")
    p.add_argument("--steps", type=int, default=10, help="timed train steps per case")
    p.add_argument("--warmup", type=int, default=2, help="untimed first steps (compilation)")
    p.add_argument("--gen-batches", nargs="*", type=int, default=[8, 32], help="generation batch sizes")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="timed generate calls per case (best is kept)")
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="bf16 peak of the device (default: by name)"
    )
    p.add_argument("--ceiling-n", type=int, default=8192, help="size of the measured matmul; 0 skips it")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="after timing, trace --profile-steps more steps of each train case into DIR and "
        "print where the device time goes (benchmarks/profile_summary.py)",
    )
    p.add_argument("--profile-steps", type=int, default=3)
    args = p.parse_args(argv)

    import align  # noqa: F401  (XLA flags before the backend starts)
    import jax
    import jax.numpy as jnp

    dtype = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}[args.dtype]
    dev = jax.devices()[0]
    peak = args.peak_tflops * 1e12 if args.peak_tflops else device_peak(dev.device_kind)
    rows = [
        {
            "case": "device",
            "kind": dev.device_kind,
            "platform": dev.platform,
            "jax": jax.__version__,
            "peak_tflops": peak and peak / 1e12,
        }
    ]
    print(
        f"device: {dev.device_kind} ({dev.platform}), jax {jax.__version__}, "
        f"bf16 peak {'%.1f TFLOP/s' % (peak / 1e12) if peak else 'unknown (--peak-tflops)'}",
        flush=True,
    )
    if args.ceiling_n:
        rate = matmul_rate(args.ceiling_n)
        rows.append({"case": "matmul", "n": args.ceiling_n, "tflops": rate / 1e12})
        print(
            f"measured bf16 matmul {args.ceiling_n}^3: {rate / 1e12:.1f} TFLOP/s"
            + (f" ({100 * rate / peak:.0f}% of peak)" if peak else ""),
            flush=True,
        )

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))

    if not args.skip_train:
        print(
            f"\n{'train':<12} {'B':>3} {'T':>5} {'loss_C':>6} {'attn':>6} {'remat':>5} {'step_ms':>8} "
            f"{'tok/s':>9} {'TFLOP/s':>8} {'MFU%':>5} {'first_s':>7}",
            flush=True,
        )
        for preset in args.presets:
            for batch, seq in args.shapes:
                for loss_chunk in args.loss_chunks:
                    for attn_impl, attn_chunk in itertools.product(args.attn_impl, args.attn_chunks):
                        if attn_impl == "cudnn" and attn_chunk != args.attn_chunks[0]:
                            continue  # the chunk size does not reach the cuDNN path
                        case = dict(
                            preset=preset,
                            batch=batch,
                            seq=seq,
                            loss_chunk=loss_chunk,
                            attn_chunk=attn_chunk,
                            attn_impl=attn_impl,
                            remat=args.remat,
                        )
                        try:
                            r = train_case(
                                dtype=dtype,
                                steps=args.steps,
                                warmup=args.warmup,
                                profile_dir=args.profile,
                                profile_steps=args.profile_steps,
                                **case,
                            )
                        except Exception as e:  # noqa: BLE001  (one failed case, e.g. out of memory, is a row)
                            print(
                                f"{preset:<12} {batch:>3} {seq:>5} failed: "
                                f"{type(e).__name__}: {str(e)[:300]}",
                                flush=True,
                            )
                            rows.append({"case": "train", **case, "error": str(e)[:2000]})
                            continue
                        r["mfu"] = r["achieved_tflops"] * 1e12 / peak if peak else None
                        rows.append({"case": "train", **case, **r})
                        mfu = f"{100 * r['mfu']:>5.1f}" if peak else f"{'-':>5}"
                        attn = "cudnn" if attn_impl == "cudnn" else attn_chunk
                        print(
                            f"{preset:<12} {batch:>3} {seq:>5} {loss_chunk:>6} {attn:>6} "
                            f"{str(args.remat):>5} {1e3 * r['step_s']:>8.1f} {r['tokens_per_s']:>9.0f} "
                            f"{r['achieved_tflops']:>8.1f} {mfu} {r['first_steps_s']:>7.1f}",
                            flush=True,
                        )
                        save()
    if args.gen_batches:
        print(
            f"\n{'generate':<12} {'B':>3} {'new':>5} {'tok/s':>9} {'ms/step':>8} {'first_s':>7}", flush=True
        )
        for preset in args.presets:
            for batch in args.gen_batches:
                try:
                    r = gen_case(preset, batch, args.prompt_len, args.new_tokens, dtype, args.repeats)
                except Exception as e:  # noqa: BLE001
                    print(f"{preset:<12} {batch:>3} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                    rows.append(
                        {"case": "generate", "preset": preset, "batch": batch, "error": str(e)[:2000]}
                    )
                    continue
                rows.append(
                    {
                        "case": "generate",
                        "preset": preset,
                        "batch": batch,
                        "new_tokens": args.new_tokens,
                        "dtype": args.dtype,
                        **r,
                    }
                )
                print(
                    f"{preset:<12} {batch:>3} {args.new_tokens:>5} {r['tokens_per_s']:>9.0f} "
                    f"{r['ms_per_token_step']:>8.2f} {r['first_call_s']:>7.1f}",
                    flush=True,
                )
                save()
    save()
    return 0


if __name__ == "__main__":
    import align

    align.setup()  # XLA:CPU defaults (and ALIGN_KEEP_HOST_MEMORY), as the `align` command line runs
    sys.exit(main())
