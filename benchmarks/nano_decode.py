"""Decode speed and memory of the nano student beside its teacher, float and 4-bit, in one run.

    python benchmarks/nano_decode.py --model teacher=DIR --model nano=DIR --gguf-dir /tmp/g --out rows.jsonl

For each model (an HF directory): the float directory as it is, and its `q4_0` GGUF (written once by
`align convert DIR OUT.gguf --quant q4_0` into --gguf-dir: 2-D weights Q4_0 in 32-weight blocks with
one f16 scale, the tied embedding Q8_0 as llama.cpp keeps its output matrix, norms f32).

"4-bit" here is the file: align's GGUF importer (like transformers' GGUF loader) dequantizes every
tensor to float32 when it loads, so the model that decodes from a q4_0 file holds float32 weights and
runs float32 arithmetic. What 4 bits change in this stack is the file (disk, download) and the weights'
values (their rounding error: the top-1 agreement and max |logit difference| against the float model on
benchmarks/gguf_export.py's prompts, read back by our importer and by transformers' GGUF loader,
measured here for each model); speed and resident memory are the float model's. A runtime that
computes on the 4-bit blocks is llama.cpp (not measured here).

Each (model, format) decodes in a fresh subprocess (`gguf_export.py --decode`: align.load, one warm-up
and one timed greedy `generate` call of --batch x --new-tokens, no stop token), the cases interleaved
--repeats times so that drift on a shared machine hits every case alike; one JSON row per case with the
median tokens/s, VmRSS after loading and VmHWM (peak) of the process. `--repeats 0` writes and reads
back the GGUF files only (e.g. `--quant q8_0` beside a q4_0 decode run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def file_mb(path: Path) -> float:
    files = [path] if path.is_file() else list(path.glob("*.safetensors"))
    return round(sum(f.stat().st_size for f in files) / 1e6, 2)


def ensure_gguf(src: str, out: Path, quant: str) -> Path:
    if not out.exists():
        cmd = [sys.executable, "-m", "pipelines.cli", "convert", src, str(out), "--quant", quant]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def rounding(src: str, gguf: Path) -> dict:
    """max |logit difference| and top-1 agreement of the GGUF read back, by our importer and by
    transformers' GGUF loader (`from_pretrained(dir, gguf_file=...)`), against the float model run by
    our decoder."""
    sys.path.insert(0, str(HERE))
    import torch
    import transformers
    from gguf_export import PROMPTS, _compare, _ours_logits, _torch_logits

    import align

    ref = align.load(src)
    ids = [ref.tokenizer.encode(p, add_bos=True) for p in PROMPTS]
    want = [_ours_logits(ref.model, i) for i in ids]
    del ref
    got = align.load(str(gguf), with_tokenizer=False).model
    ours = _compare([_ours_logits(got, i) for i in ids], want)
    del got
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    return {"ours": ours, "transformers": _compare([_torch_logits(hf.eval(), i) for i in ids], want)}


def decode_once(spec: str, args) -> dict:
    cmd = [sys.executable, str(HERE / "gguf_export.py"), "--out", "/tmp", "--decode", spec,
           "--batch", str(args.batch), "--new-tokens", str(args.new_tokens)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def decode_summary(rs: list[dict], args) -> dict:
    """One case's decode runs: median tokens/s, the largest resident and peak memory."""
    return {"batch": args.batch, "new_tokens": args.new_tokens,
            "tok_s": statistics.median(r["tok_s"] for r in rs), "tok_s_runs": [r["tok_s"] for r in rs],
            "rss_after_load_mib": max(r["rss_after_load_mib"] for r in rs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="NAME=HF_DIR (repeatable)")
    p.add_argument("--gguf-dir", type=Path, required=True)
    p.add_argument("--quant", default="q4_0", choices=("q4_0", "q8_0"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2, help="0: file sizes and read-back only, no decode")
    p.add_argument("--out", type=Path, help="JSON-lines file the rows are appended to")
    p.add_argument("--no-rounding", action="store_true", help="skip the logits comparison")
    args = p.parse_args()
    args.gguf_dir.mkdir(parents=True, exist_ok=True)

    cases = []
    for item in args.model:
        name, src = item.split("=", 1)
        gguf = ensure_gguf(src, args.gguf_dir / f"{name}-{args.quant}.gguf", args.quant)
        extra = {} if args.no_rounding else {"vs_float": rounding(src, gguf)}
        print(json.dumps({"model": name, "format": args.quant, **extra}), file=sys.stderr, flush=True)
        cases += [(name, "float32", src, {}), (name, args.quant, str(gguf), extra)]
    runs = {i: [] for i in range(len(cases))}
    for _ in range(args.repeats):
        for i, (_, _, spec, _) in enumerate(cases):
            runs[i].append(decode_once(spec, args))
    for i, (name, fmt, spec, extra) in enumerate(cases):
        rs = runs[i]
        row = {"model": name, "format": fmt, "file_mb": file_mb(Path(spec)), **extra}
        if rs:
            row |= decode_summary(rs, args)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
