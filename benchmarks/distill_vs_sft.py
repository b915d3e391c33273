"""KD against SFT for the same student at equal steps and tokens: held-out KL to the teacher and NLL on
teacher samples, with a learning curve of both.

    python benchmarks/distill_vs_sft.py --teacher /path/to/variants/chat --prompts 200 --heldout 40 \
        --steps 100 --eval-at 0,10,25,50,100 --samples /work/cache/x/samples.jsonl --out rows.jsonl

1. The teacher samples one response per prompt of HH helpful-base (temperature 1, `--new-tokens`,
   prompts of at most `--max-prompt` tokens, each prompt once): the "teacher samples", cached in
   `--samples` (JSON lines) so every run reuses the same ones. The first `--heldout` prompts are held
   out; the students train on the others.
2. The student is the teacher's even layers (align.rl.distill.student_from_teacher). Copies of it train
   for `--steps` steps on the same batches in the same order, from the same init and learning rate:
   `--kinds kd` (the divergence of `--beta` to the teacher on every response token: 0 forward KL as
   Gemma 2, in between GKD's JSD; align distill's loss) and `sft` (NLL of the sampled tokens).
3. At each step of `--eval-at` every student is evaluated on the held-out samples by the same function:
   forward KL(teacher || student) and NLL of the samples, token means over response tokens, with a 95%
   bootstrap interval over held-out sequences. One JSON row per (model, step), appended to `--out` as it
   is measured, and a paired KD - SFT row at the last step.

Why KD should win, and how it can fail to show. With samples drawn from the teacher at temperature 1,
the expected SFT gradient (q - onehot(y), y ~ p) is the forward-KL gradient (q - p): at equal learning
rates KD is SFT without the sampling noise of the targets. The two separate only once that noise
matters; in the first steps (KL falling from ~16 nats) both follow the same mean gradient.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def read_prompts(tokenizer, args) -> list:
    """Distinct prompts of at most --max-prompt tokens: HH helpful-base in file order, or (--prompt-source
    selfaware) SelfAware training questions (split seed 7, the hedging suite's held-out questions left
    out), unanswerable and answerable alternating, each asked as the hedging suite asks it (one user
    turn of QA_PROMPT): prompts on which a teacher that hedges shows it."""
    if args.prompt_source == "selfaware":
        return selfaware_prompts(tokenizer, args)
    from align.data import load_records
    from align.data.prompts import encode_prompt
    from align.data_dir import data_path
    from pipelines.stages.sft import as_sft_example

    path = str(data_path("hh_rlhf/helpful-base/test.jsonl.gz"))
    seen, out = set(), []
    for r in load_records(path, "train", limit=20 * args.prompts, skip_invalid=True):
        p = encode_prompt(as_sft_example(r).prompt, tokenizer)
        if len(p) <= args.max_prompt and p.tobytes() not in seen:
            seen.add(p.tobytes())
            out.append(p)
    return out[: args.prompts]


def selfaware_prompts(tokenizer, args) -> list:
    from align.data.prompts import encode_prompt
    from align.data.selfaware import QA_PROMPT, read_selfaware, split_selfaware
    from align.data_dir import data_path

    train, _ = split_selfaware(read_selfaware(data_path("selfaware/SelfAware.json"))[0], seed=7)
    sides = [[q for q in train if not q.answerable], [q for q in train if q.answerable]]
    out = []
    for k in range(2 * min(map(len, sides))):
        q = sides[k % 2][k // 2]
        p = encode_prompt([{"role": "user", "content": QA_PROMPT.format(question=q.question)}], tokenizer)
        if len(p) <= args.max_prompt:
            out.append(p)
    return out[: args.prompts]


def teacher_samples(teacher, tokenizer, args) -> list:
    """[Tokenized(prompt + response, loss_mask on the response)], cached in --samples."""
    import jax

    from align.data import Tokenized
    from align.sampling import SamplingConfig, generate
    from align.sampling.text import pad_prompts

    rows = []
    if args.samples and os.path.exists(args.samples):
        rows = [json.loads(line) for line in open(args.samples)]
    if len(rows) < args.prompts:
        prompts = read_prompts(tokenizer, args)
        config = SamplingConfig(max_new_tokens=args.new_tokens, temperature=1.0,
                                stop_ids=tuple(tokenizer.stop_ids), pad_id=tokenizer.pad_id)  # fmt: skip
        for i in range(len(rows), len(prompts), args.gen_batch):
            chunk = prompts[i : i + args.gen_batch]
            tokens, lengths = pad_prompts(chunk, tokenizer.pad_id, rows=args.gen_batch)
            res = jax.device_get(generate(teacher, tokens, lengths, config, jax.random.PRNGKey(i)))
            new = [{"prompt": p.tolist(), "response": r[:n].tolist()}
                   for p, r, n in zip(chunk, res.tokens, res.lengths, strict=False)]  # fmt: skip
            rows += new
            if args.samples:  # appended as generated: a killed run keeps what it sampled
                with open(args.samples, "a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in new)
    out = []
    for r in rows[: args.prompts]:
        seq = np.asarray(r["prompt"] + r["response"], np.int32)
        out.append(Tokenized(seq, np.arange(len(seq)) >= len(r["prompt"])))
    return out


def make_row_eval(chunk_size: int, vocab_chunk):
    """jit(state, batch) -> per-row sums over response tokens: (forward KL to the teacher, NLL, tokens)."""
    import jax

    from align.training.distill import chunked_token_divergence
    from align.training.logprobs import chunked_token_logprobs

    @jax.jit
    def evaluate(state, batch):
        pair = state.model()
        s, t = pair.student, pair.teacher
        args = (batch["tokens"], batch["positions"], batch["segment_ids"])
        h_s, h_t = s.hidden(*args), t.hidden(*args)  # [B, T, D]
        kl = chunked_token_divergence(
            h_s, s.unembed_matrix(), h_t, t.unembed_matrix(), beta=0.0, chunk_size=chunk_size,
            vocab_chunk=vocab_chunk, student_softcap=s.config.final_logit_softcap,
            teacher_softcap=t.config.final_logit_softcap,
        )  # fmt: skip
        lp = chunked_token_logprobs(h_s, s.unembed_matrix(), batch["targets"], chunk_size=chunk_size,
                                    final_softcap=s.config.final_logit_softcap)  # fmt: skip
        m = batch["loss_mask"]
        return (kl * m).sum(-1), (-lp * m).sum(-1), m.sum(-1)

    return evaluate


def per_sequence(evaluate, state, seqs, args, pad_id) -> tuple:
    """([N] KL sums, [N] NLL sums, [N] token counts) over the held-out sequences."""
    import jax

    from align.data import pad_batch

    parts = []
    for i in range(0, len(seqs), args.batch):
        chunk = seqs[i : i + args.batch]
        out = jax.device_get(evaluate(state, pad_batch(chunk, args.seq, rows=args.batch, pad_id=pad_id)))
        parts.append(np.stack([np.asarray(x)[: len(chunk)] for x in out]))
    kl, nll, n = np.concatenate(parts, axis=1).astype(np.float64)
    return kl, nll, n


def bootstrap(x, n, seed: int = 0) -> dict:
    """Token-weighted mean of per-sequence sums x over tokens n, 95% bootstrap over the sequences."""
    idx = np.random.default_rng(seed).integers(0, len(n), (2000, len(n)))
    boot = x[idx].sum(1) / n[idx].sum(1)
    return {"mean": float(x.sum() / n.sum()), "ci95": [float(np.percentile(boot, q)) for q in (2.5, 97.5)]}


def row(raw) -> dict:
    kl, nll, n = raw
    return {
        "kl_to_teacher": bootstrap(kl, n),
        "nll_teacher_samples": bootstrap(nll, n),
        "tokens": int(n.sum()),
    }


def paired_difference(a, b) -> dict:
    """a minus b, token-weighted over the same held-out sequences, with a paired 95% bootstrap."""
    n = a[2]
    return {
        "kl_to_teacher": bootstrap(a[0] - b[0], n, 1),
        "nll_teacher_samples": bootstrap(a[1] - b[1], n, 1),
    }


def train(kind: str, student, teacher, train_seqs, held, args, pad_id, emit) -> dict:
    """`args.steps` steps of KD or SFT from `student`, evaluated at --eval-at; returns {step: raw}."""
    from align.data import DataOrder, batches, pad_batch
    from align.rl.distill import Distiller, DistillLoss, distill_loss_fn, student_only
    from align.training import LoopConfig, OptimConfig, make_optimizer
    from align.training.options import MeshOptions, TrainOptions, make_run_mesh
    from align.training.run import fit, prepare_run
    from pipelines.stages.sft import sft_loss

    vocab_chunk = args.vocab_chunk or None
    loss = DistillLoss(beta=args.beta, chunk_size=args.chunk, vocab_chunk=vocab_chunk)
    nll = sft_loss(args.chunk)
    loss_fn = distill_loss_fn(loss) if kind == "kd" else (lambda m, b, r: nll(m.student, b, r))
    optim = OptimConfig(learning_rate=args.lr, warmup_steps=args.warmup, total_steps=max(args.steps, 1),
                        weight_decay=0.0, clip_norm=1.0, schedule="cosine")  # fmt: skip
    run = prepare_run(
        Distiller(student, teacher),
        make_optimizer(optim),
        loss_fn,
        run_dir=tempfile.mkdtemp(prefix=f"kd_vs_sft_{kind}_", dir=args.scratch),
        train=TrainOptions(batch_size=args.batch, log_every=1, progress=False, eval_before=False, seed=0),
        mesh=make_run_mesh(MeshOptions(devices=1)),
        trainable=student_only("no_embeddings"),
    )
    evaluate = make_row_eval(args.chunk, vocab_chunk)
    raws, clock = {}, {"t": time.perf_counter(), "train_s": 0.0}

    def measure(step, state):
        if step not in args.eval_at:
            return
        clock["train_s"] += time.perf_counter() - clock["t"]
        raws[step] = per_sequence(evaluate, state, held, args, pad_id)
        emit({"model": "start" if step == 0 else kind, "step": step, **row(raws[step]),
              "train_seconds": round(clock["train_s"], 1)})  # fmt: skip
        clock["t"] = time.perf_counter()

    if 0 in args.eval_at:
        measure(0, run.state)
    order = DataOrder(len(train_seqs), seed=0)  # the same order for every kind: the same batches
    make = lambda pos: batches(  # noqa: E731
        train_seqs, order, pos, args.batch, lambda b: pad_batch(b, args.seq, rows=args.batch, pad_id=pad_id)
    )
    if args.steps:
        fit(run, make, LoopConfig(total_steps=args.steps, log_every=1, progress=False), on_step=measure)
    run.checkpointer.close()
    if args.export:
        from pipelines.stages.sft import export_model

        export_model(run.state.model().student, args.tokenizer, os.path.join(args.export, kind))
    return raws


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="gemma3-270m", help="model spec or HF dir (e.g. variants/chat)")
    p.add_argument("--prompts", type=int, default=48)
    p.add_argument(
        "--prompt-source",
        choices=("hh", "selfaware"),
        default="hh",
        help="hh: HH helpful-base prompts; selfaware: SelfAware training questions (hedging)",
    )
    p.add_argument("--heldout", type=int, default=8)
    p.add_argument("--max-prompt", type=int, default=64, help="longest prompt kept, in tokens")
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument(
        "--eval-at", default="", help="comma-separated steps to evaluate at (0 and the last always)"
    )
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--gen-batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--beta", type=float, default=0.0, help="KD's divergence: 0 forward KL, (0, 1) JSD")
    p.add_argument("--kinds", default="kd,sft")
    p.add_argument("--chunk", type=int, default=256, help="tokens per logits tile")
    p.add_argument("--vocab-chunk", type=int, default=0, help="0: the whole vocabulary per tile")
    p.add_argument("--samples", default=None, help="JSON-lines cache of the teacher samples")
    p.add_argument("--out", default=None, help="JSON-lines file the rows are appended to")
    p.add_argument("--export", default=None, help="directory: each trained student as an HF dir <kind>/")
    p.add_argument("--scratch", default=None, help="directory for the runs' checkpoints")
    args = p.parse_args()
    args.eval_at = {0, args.steps} | {int(s) for s in args.eval_at.split(",") if s}
    return args


def main() -> None:
    args = parse_args()
    import align

    align.setup()
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from align.hub import ModelOptions, load_model
    from align.rl.distill import kept_layers, student_from_teacher

    teacher, tokenizer = load_model(ModelOptions(spec=args.teacher))
    args.tokenizer = tokenizer
    seqs = teacher_samples(teacher, tokenizer, args)
    held, train_seqs = seqs[: args.heldout], seqs[args.heldout :]
    student = student_from_teacher(teacher, kept_layers(teacher.config.num_layers, "every_other"))
    common = {"teacher": args.teacher, "steps": args.steps, "batch": args.batch, "seq": args.seq,
              "lr": args.lr, "beta": args.beta, "train_sequences": len(train_seqs),
              "heldout_sequences": len(held)}  # fmt: skip

    def emit(r):
        line = json.dumps({**r, **common})
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")

    def fresh(model):  # own buffers: each run's step donates its whole state, the teacher's included
        graphdef, state = nnx.split(model)
        return nnx.merge(graphdef, jax.tree.map(jnp.copy, state))

    last = {}
    for i, kind in enumerate(args.kinds.split(",")):
        if i == 1:
            args.eval_at -= {0}  # the shared start is measured once
        raws = train(kind, fresh(student), fresh(teacher), train_seqs, held, args, tokenizer.pad_id, emit)
        last[kind] = raws[max(raws)]
    if {"kd", "sft"} <= set(last):
        emit({"model": "kd_minus_sft", "step": args.steps, **paired_difference(last["kd"], last["sft"])})


if __name__ == "__main__":
    main()
