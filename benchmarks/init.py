"""Random initialisation of a preset: the Decoder built eagerly (one small cached kernel per
distinct parameter shape, what `align.load` on a `preset:` spec does) beside the whole initialiser
compiled as one jit program (what it did before; results in benchmarks/RESULTS.md).

    .venv/bin/python benchmarks/init.py                           # gemma3_270m
    .venv/bin/python benchmarks/init.py --presets tiny gemma3_270m gemma3_1b

Both produce the same weights (checked per row: max |difference|). Times include compilation,
which is the point: a fresh process pays it on every run. Prints one comparison row per case.
"""

from __future__ import annotations

import argparse
import time


def _timed(build):
    import jax

    t0 = time.perf_counter()
    leaves = jax.block_until_ready(build())
    return time.perf_counter() - t0, leaves


def bench(preset: str) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from align.model import Decoder
    from align.model.config import PRESETS

    config = PRESETS[preset]()

    def make():
        return Decoder(config, rngs=nnx.Rngs(0))

    jit_s, by_jit = _timed(lambda: jax.tree.leaves(jax.jit(lambda: nnx.state(make()))()))
    by_jit = [jax.device_get(x) for x in by_jit]  # host copies: frees device memory for the next build
    eager_s, eager = _timed(lambda: jax.tree.leaves(nnx.state(make())))
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(eager, by_jit, strict=True))
    return {
        "preset": preset,
        "params": sum(x.size for x in eager),
        "one_jit_s": jit_s,
        "eager_s": eager_s,
        "max_abs_diff": diff,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--presets", nargs="+", default=["gemma3_270m"], help="names from align.model.config.PRESETS"
    )
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    jax.block_until_ready(jnp.ones(()) + 1)  # backend start-up, charged to neither side
    print(
        f"{'preset':<14}{'params':>14}{'one jit s':>11}{'eager s':>9}{'speed-up':>10}{'max|diff|':>11}"
        f"  ({jax.devices()[0].device_kind})"
    )
    for preset in args.presets:
        r = bench(preset)
        print(
            f"{r['preset']:<14}{r['params']:>14,}{r['one_jit_s']:>11.1f}{r['eager_s']:>9.1f}"
            f"{r['one_jit_s'] / r['eager_s']:>9.2f}x{r['max_abs_diff']:>11.1e}",
            flush=True,
        )


if __name__ == "__main__":
    import align

    align.setup()  # XLA:CPU defaults (and ALIGN_KEEP_HOST_MEMORY), as the `align` command line runs
    main()
