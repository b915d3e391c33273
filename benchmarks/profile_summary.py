"""Where the device time of a traced program goes: a text table from a `jax.profiler` trace.

    python benchmarks/profile_summary.py TRACE_DIR --steps 3          # the newest *.xplane.pb under it

Reads the XSpace file with `jax.profiler.ProfileData` (no TensorBoard needed), takes the device
planes (`/device:GPU:0`, ...; on CPU the host plane's XLA thunks), and sums kernel time by
category (matmul, attention, reduction, elementwise, copy) and by kernel, per traced step. Kernel
names are the backend's (cuBLAS/cuDNN/Triton names, XLA fusion kinds); `hlo_op` is the instruction
in the optimized HLO (`Compiled.as_text()`) that launched it.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

# First match wins; tested against the lower-cased kernel name and its HLO op name.
CATEGORIES = (
    ("attention", ("fmha", "flash", "cudnn", "fprop_", "dgrad_", "sdpa")),
    ("matmul", ("gemm", "xmma", "cutlass", "cublas", "dot", "matmul", "wgmma", "sm90_", "ynn")),
    ("reduction", ("reduce", "reduction", "softmax", "scatter")),
    (
        "copy",
        (
            "copy",
            "transpose",
            "memcpy",
            "memset",
            "dynamic-update-slice",
            "dynamic_update_slice",
            "concatenate",
        ),
    ),
    ("elementwise", ("fusion", "loop", "convert", "add", "multiply")),
)


def category(kernel: str, hlo_op: str) -> str:
    text = f"{kernel} {hlo_op}".lower()
    return next((name for name, keys in CATEGORIES if any(k in text for k in keys)), "other")


def newest_trace(trace_dir: str | Path) -> Path:
    files = sorted(Path(trace_dir).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no *.xplane.pb under {trace_dir} (was jax.profiler.trace run there?)")
    return files[-1]


def kernel_events(path: Path):
    """(kernel name, hlo_op, duration in ns) of every device kernel in the trace."""
    from jax.profiler import ProfileData

    data = ProfileData.from_file(str(path))
    planes = [p for p in data.planes if p.name.startswith("/device:")]
    for plane in planes:
        for line in plane.lines:
            # GPU planes hold one line per stream plus summary lines ("XLA Ops", "XLA Modules", ...)
            # that repeat the same time; count the streams only.
            if not line.name.startswith("Stream"):
                continue
            for e in line.events:
                stats = dict(e.stats)
                yield e.name, str(stats.get("hlo_op", "")), float(e.duration_ns)
    if not planes:  # CPU: the XLA runtime's thunks on the host threads
        host = next(p for p in data.planes if p.name == "/host:CPU")
        for line in host.lines:
            if line.name.startswith("tf_XLA"):
                for e in line.events:
                    stats = dict(e.stats)
                    if "hlo_op" in stats:
                        yield e.name, str(stats["hlo_op"]), float(e.duration_ns)


def summarize(trace_dir: str | Path, steps: int, top: int = 25) -> dict:
    """Per-step milliseconds by category and for the `top` kernels, from the newest trace."""
    path = newest_trace(trace_dir)
    by_cat: dict[str, float] = collections.Counter()
    by_kernel: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for name, hlo_op, ns in kernel_events(path):
        by_cat[category(name, hlo_op)] += ns
        row = by_kernel[(name[:90], hlo_op[:40])]
        row[0] += ns
        row[1] += 1
    total = sum(by_cat.values()) or 1.0
    ms = lambda ns: ns / 1e6 / steps  # noqa: E731
    kernels = sorted(by_kernel.items(), key=lambda kv: -kv[1][0])[:top]
    return {
        "trace": str(path),
        "busy_ms_per_step": ms(total),
        "categories": {
            k: {"ms": ms(v), "share": v / total} for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])
        },
        "kernels": [
            {"kernel": k, "hlo_op": op, "ms": ms(t), "calls": n / steps, "share": t / total}
            for (k, op), (t, n) in kernels
        ],
    }


def format_summary(s: dict) -> str:
    out = [f"device busy {s['busy_ms_per_step']:.2f} ms/step  ({s['trace']})"]
    out += [f"  {k:<12} {v['ms']:>9.2f} ms {100 * v['share']:>5.1f}%" for k, v in s["categories"].items()]
    out.append(f"  {'ms/step':>8} {'share':>6} {'calls':>6}  kernel [hlo op]")
    out += [
        f"  {k['ms']:>8.2f} {100 * k['share']:>5.1f}% {k['calls']:>6.0f}  {k['kernel']} [{k['hlo_op']}]"
        for k in s["kernels"]
    ]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace_dir")
    p.add_argument("--steps", type=int, default=1, help="steps the trace holds (times are divided by it)")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    print(format_summary(summarize(args.trace_dir, args.steps, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
