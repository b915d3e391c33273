"""GGUF export of gemma3-270m: file size, logit error and decode speed / memory of float, 8- and 4-bit.

    nice -n 10 .venv/bin/python benchmarks/gguf_export.py --out /tmp/gguf-bench   # ~5 min on 2 cores

Writes f32, q8_0 and q4_0 files with `align.model.gguf_export.write_gguf` (tokenizer copied from the
embedded GGUF), then for each file: max |logit - float logit| and top-1 agreement on PROMPTS, read back
through our importer and through transformers' GGUF loader (`from_pretrained(dir, gguf_file=...)`).
Decode: a fresh subprocess per model (`--decode PATH`) loads it with `align.load`, runs one warm-up and
one timed greedy `generate` call, and reports tokens/s, VmRSS after loading and VmHWM (peak). Both our
importer and transformers dequantize GGUF weights to float on load, so decode speed and resident memory
are the float model's whatever the file: only the file (disk, download) shrinks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PROMPTS = [
    "The capital of France is Paris, and the capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Three facts about the ocean: 1.",
    "Q: What is 17 * 3?\nA:",
]
QUANTS = ("f32", "q8_0", "q4_0")


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024


def _ours_logits(model, ids):
    import jax.numpy as jnp
    import numpy as np

    t = len(ids)
    x = jnp.asarray([ids], jnp.int32)
    return np.asarray(model(x, jnp.arange(t)[None], jnp.ones((1, t), jnp.int32)).logits[0])


def _torch_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def _compare(got, want) -> dict:
    import numpy as np

    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    agree = np.concatenate([g.argmax(-1) == w.argmax(-1) for g, w in zip(got, want)])
    return {"max_abs": round(diff, 4), "top1": round(float(agree.mean()), 4), "positions": int(agree.size)}


def accuracy(out: Path) -> list[dict]:
    import torch
    import transformers

    import align
    from align.hub import embedded_gguf_path, embedded_hf_dir
    from align.model.gguf_export import gguf_tokenizer_fields, write_gguf

    loaded = align.load("gemma3-270m")
    ids = [loaded.tokenizer.encode(p, add_bos=True) for p in PROMPTS]
    want = [_ours_logits(loaded.model, i) for i in ids]
    fields = gguf_tokenizer_fields(embedded_gguf_path())
    ref = transformers.AutoModelForCausalLM.from_pretrained(embedded_hf_dir(), dtype=torch.float32).eval()
    rows = [{"model": "float (HF dir)", "transformers": _compare([_torch_logits(ref, i) for i in ids], want)}]
    del ref
    for quant in QUANTS:
        start = time.perf_counter()
        path = write_gguf(
            loaded.model,
            out / f"gemma3-270m-{quant}.gguf",
            quant=quant,
            tokenizer_fields=fields,
            name="gemma3-270m",
        )
        row = {
            "model": quant,
            "write_s": round(time.perf_counter() - start, 1),
            "mb": round(path.stat().st_size / 1e6, 1),
        }
        ours = align.load(str(path), with_tokenizer=False).model
        row["ours"] = _compare([_ours_logits(ours, i) for i in ids], want)
        del ours
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            out, gguf_file=path.name, dtype=torch.float32
        ).eval()
        row["transformers"] = _compare([_torch_logits(hf, i) for i in ids], want)
        del hf
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def decode(spec: str, batch: int, new_tokens: int) -> dict:
    import jax

    import align
    from align.sampling import SamplingConfig, generate
    from align.sampling.text import encode_texts, pad_prompts

    loaded = align.load(spec)
    rss_loaded = _status_mib("VmRSS")
    ids = encode_texts(loaded.tokenizer, [PROMPTS[i % len(PROMPTS)] for i in range(batch)], chat=False)
    tokens, lengths = pad_prompts(ids, loaded.tokenizer.pad_id)
    cfg = SamplingConfig(max_new_tokens=new_tokens)  # no stop ids: exactly batch * new_tokens tokens
    run = lambda: jax.block_until_ready(generate(loaded.model, tokens, lengths, cfg).tokens)  # noqa: E731
    run()  # compile
    start = time.perf_counter()
    run()
    secs = time.perf_counter() - start
    return {
        "tok_s": round(batch * new_tokens / secs, 1),
        "rss_after_load_mib": round(rss_loaded),
        "peak_rss_mib": round(_status_mib("VmHWM")),
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the GGUF files (~1.5 GB)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--decode", help=argparse.SUPPRESS)  # worker: one model in this process
    args = parser.parse_args()
    if args.decode:
        print(json.dumps(decode(args.decode, args.batch, args.new_tokens)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    accuracy(args.out)
    from align.hub import embedded_hf_dir

    for name, spec in [("float (HF dir)", embedded_hf_dir())] + [
        (q, str(args.out / f"gemma3-270m-{q}.gguf")) for q in QUANTS
    ]:
        cmd = [sys.executable, __file__, "--out", str(args.out), "--decode", spec]
        cmd += ["--batch", str(args.batch), "--new-tokens", str(args.new_tokens)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        print(json.dumps({"model": name, **json.loads(out.strip().splitlines()[-1])}), flush=True)


if __name__ == "__main__":
    main()
