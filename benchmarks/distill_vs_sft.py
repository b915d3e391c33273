"""KD against SFT for the same student at equal steps: held-out KL to the teacher and NLL on teacher samples.

    python benchmarks/distill_vs_sft.py --steps 8 --prompts 48 --heldout 8

1. The teacher (default: the embedded gemma3-270m) samples one response per prompt of HH helpful-base
   (temperature 1, `--new-tokens`): the "teacher samples".
2. The student is the teacher's even layers (align.rl.distill.student_from_teacher); two copies of it
   train for `--steps` steps on the same batches of teacher samples: one by forward KL to the teacher
   on every response token (align distill's loss), one by SFT (NLL of the sampled tokens).
3. Both are evaluated on the held-out teacher samples with the same function (align.rl.distill's
   eval: forward KL to the teacher and NLL of the samples, token means), with a 95% bootstrap interval
   over held-out sequences. One JSON row per model (start, kd, sft).
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np


def teacher_samples(teacher, tokenizer, args) -> list:
    """[Tokenized(prompt + response, loss_mask on the response)], prompts <= seq - new_tokens tokens."""
    import jax

    from align.data import Tokenized, load_records
    from align.data.prompts import encode_prompt
    from align.data_dir import data_path
    from align.sampling import SamplingConfig, generate
    from align.sampling.text import pad_prompts
    from pipelines.stages.sft import as_sft_example

    records = load_records(
        str(data_path("hh_rlhf/helpful-base/test.jsonl.gz")), "train", limit=4 * args.prompts
    )
    room = args.seq - args.new_tokens
    prompts = [
        p for p in (encode_prompt(as_sft_example(r).prompt, tokenizer) for r in records) if len(p) <= room
    ]
    prompts = prompts[: args.prompts]
    config = SamplingConfig(
        max_new_tokens=args.new_tokens,
        temperature=1.0,
        stop_ids=tuple(tokenizer.stop_ids),
        pad_id=tokenizer.pad_id,
    )
    out = []
    for i in range(0, len(prompts), args.gen_batch):
        chunk = prompts[i : i + args.gen_batch]
        tokens, lengths = pad_prompts(chunk, tokenizer.pad_id, rows=args.gen_batch)
        res = jax.device_get(generate(teacher, tokens, lengths, config, jax.random.PRNGKey(i)))
        for p, row, n in zip(chunk, res.tokens, res.lengths, strict=False):
            seq = np.concatenate([p, row[:n]]).astype(np.int32)
            out.append(Tokenized(seq, np.arange(len(seq)) >= len(p)))
    return out


def per_sequence_eval(run, seqs, args, pad_id) -> dict:
    """Token-mean KL and NLL over the held-out sequences, each with a 95% bootstrap interval over them."""
    import jax

    from align.data import pad_batch

    kl, nll, n = [], [], []
    for s in seqs:  # one row per call: per-sequence sums (weighted by tokens) for the interval
        out = jax.device_get(run.eval_fn(run.state, pad_batch([s], args.seq, rows=1, pad_id=pad_id)))
        kl.append(float(out["loss"]))
        nll.append(float(out["nll"]))
        n.append(float(out["weight"]))
    kl, nll, n = map(np.asarray, (kl, nll, n))
    rs = np.random.default_rng(0)
    idx = rs.integers(0, len(n), (2000, len(n)))

    def summary(x):
        boot = (x[idx].sum(1)) / n[idx].sum(1)
        return {
            "mean": float(x.sum() / n.sum()),
            "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        }

    row = {"kl_to_teacher": summary(kl), "nll_teacher_samples": summary(nll), "tokens": int(n.sum())}
    return row, (kl, nll, n)


def paired_difference(a, b) -> dict:
    """KD minus SFT, token-weighted over the same held-out sequences, with a paired 95% bootstrap."""
    (kl_a, nll_a, n), (kl_b, nll_b, _) = a, b
    idx = np.random.default_rng(1).integers(0, len(n), (2000, len(n)))
    out = {}
    for name, x in (("kl_to_teacher", kl_a - kl_b), ("nll_teacher_samples", nll_a - nll_b)):
        boot = x[idx].sum(1) / n[idx].sum(1)
        out[name] = {
            "mean": float(x.sum() / n.sum()),
            "ci95": [float(np.percentile(boot, q)) for q in (2.5, 97.5)],
        }
    return out


def train(kind: str, student, teacher, train_seqs, args, pad_id):
    """A run of `args.steps` steps of KD or SFT from `student`; returns the run (its eval step is KD's)."""
    from align.data import DataOrder, batches, pad_batch
    from align.rl.distill import Distiller, DistillLoss, distill_eval_fn, distill_loss_fn, student_only
    from align.training import LoopConfig, OptimConfig, make_optimizer
    from align.training.options import MeshOptions, TrainOptions, make_run_mesh
    from align.training.run import fit, prepare_run
    from align.training.step import make_eval_step
    from pipelines.stages.sft import sft_loss

    loss = DistillLoss(beta=0.0, chunk_size=256, vocab_chunk=args.vocab_chunk or None)
    nll = sft_loss(256)
    loss_fn = distill_loss_fn(loss) if kind == "kd" else (lambda m, b, r: nll(m.student, b, r))
    optim = OptimConfig(
        learning_rate=args.lr, warmup_steps=1, total_steps=max(args.steps, 1), weight_decay=0.0
    )
    train_opts = TrainOptions(batch_size=args.batch, log_every=1, progress=False, eval_before=False, seed=0)
    run = prepare_run(
        Distiller(student, teacher),
        make_optimizer(optim),
        loss_fn,
        run_dir=tempfile.mkdtemp(prefix=f"kd_vs_sft_{kind}_", dir=args.scratch),
        train=train_opts,
        mesh=make_run_mesh(MeshOptions(devices=1)),
        trainable=student_only("no_embeddings"),
    )
    run.eval_fn = make_eval_step(distill_eval_fn(loss))
    if args.steps:
        order = DataOrder(len(train_seqs), seed=0)
        make = lambda pos: batches(  # noqa: E731
            train_seqs,
            order,
            pos,
            args.batch,
            lambda b: pad_batch(b, args.seq, rows=args.batch, pad_id=pad_id),
        )
        fit(run, make, LoopConfig(total_steps=args.steps, log_every=1, progress=False))
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="gemma3-270m")
    p.add_argument("--prompts", type=int, default=48)
    p.add_argument("--heldout", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--gen-batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--vocab-chunk", type=int, default=0, help="0: the whole vocabulary per tile")
    p.add_argument("--scratch", default=None, help="directory for the runs' checkpoints")
    args = p.parse_args()

    import align

    align.setup()
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from align.hub import ModelOptions, load_model
    from align.rl.distill import kept_layers, student_from_teacher

    teacher, tokenizer = load_model(ModelOptions(spec=args.teacher))
    seqs = teacher_samples(teacher, tokenizer, args)
    held, train_seqs = seqs[: args.heldout], seqs[args.heldout :]
    student = student_from_teacher(teacher, kept_layers(teacher.config.num_layers, "every_other"))

    def fresh(model):  # own buffers: each run's step donates its whole state, the teacher's included
        graphdef, state = nnx.split(model)
        return nnx.merge(graphdef, jax.tree.map(jnp.copy, state))

    common = {"teacher": args.teacher, "steps": args.steps, "batch": args.batch, "seq": args.seq,
              "train_sequences": len(train_seqs), "heldout_sequences": len(held)}  # fmt: skip
    raw = {}
    for kind, steps in (("start", 0), ("kd", args.steps), ("sft", args.steps)):
        sized = argparse.Namespace(**{**vars(args), "steps": steps})
        run = train(kind, fresh(student), fresh(teacher), train_seqs, sized, tokenizer.pad_id)
        row, raw[kind] = per_sequence_eval(run, held, args, tokenizer.pad_id)
        print(json.dumps({"model": kind, **common, **row}), flush=True)
        run.checkpointer.close()
    print(json.dumps({"model": "kd_minus_sft", **common, **paired_difference(raw["kd"], raw["sft"])}))


if __name__ == "__main__":
    main()
