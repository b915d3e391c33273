"""Test doubles for the safety-eval suites: a deterministic fake LM, a fake toxicity scorer, and
tiny offline transformers artefacts (BPE tokenizer, Gemma3 causal LM, BERT classifier)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from safety_evals.lm.protocol import TokenScores, truncate_at_stop


def char_logprob(ch: str) -> float:
    """The fake LM's log-prob of one character: -(1 + (ord(ch) % 7) / 10)."""
    return -(1.0 + (ord(ch) % 7) / 10.0)


class FakeLM:
    """Deterministic LanguageModel.

    loglikelihood: each continuation character is one token with `char_logprob`, unless
    `scores[(context, continuation)]` gives the per-token log-probs (or `total` gives a one-token
    total). generate: `responses[prompt]` (a string, or a list cycled over samples), else `default`
    (a string or a callable(prompt, sample_index, seed) -> str); stop strings are applied.
    """

    def __init__(
        self,
        *,
        scores: Mapping[tuple[str, str], Sequence[float]] | None = None,
        totals: Mapping[tuple[str, str], float] | None = None,
        responses: Mapping[str, str | Sequence[str]] | None = None,
        default: str | Callable[[str, int, int], str] = "I don't know.",
        name: str = "fake",
    ):
        self.name = name
        self.scores = dict(scores or {})
        self.totals = dict(totals or {})
        self.responses = dict(responses or {})
        self.default = default
        self.ll_calls: list[list[tuple[str, str]]] = []
        self.gen_calls: list[dict] = []

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[TokenScores]:
        self.ll_calls.append(list(requests))
        out = []
        for req in requests:
            if req in self.scores:
                out.append(TokenScores(tuple(self.scores[req])))
            elif req in self.totals:
                out.append(TokenScores((float(self.totals[req]),)))
            else:
                out.append(TokenScores(tuple(char_logprob(c) for c in req[1])))
        return out

    def _one(self, prompt: str, k: int, seed: int) -> str:
        if prompt in self.responses:
            r = self.responses[prompt]
            return r if isinstance(r, str) else r[k % len(r)]
        return self.default(prompt, k, seed) if callable(self.default) else self.default

    def generate(
        self, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, num_samples=1, seed=0, stop=()
    ):
        self.gen_calls.append(
            {
                "prompts": list(prompts),
                "max_new_tokens": max_new_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "num_samples": num_samples,
                "seed": seed,
                "stop": tuple(stop),
            }
        )
        return [[truncate_at_stop(self._one(p, k, seed), stop) for k in range(num_samples)] for p in prompts]


class FakeScorer:
    """Toxicity = table lookup, else the share of characters that are '!' (deterministic)."""

    name = "fake-scorer"

    def __init__(self, table: Mapping[str, float] | None = None):
        self.table = dict(table or {})

    def score(self, texts: Sequence[str]) -> list[float]:
        return [self.table.get(t, t.count("!") / max(len(t), 1)) for t in texts]


class FakeJudge:
    """A judge with the `safety_evals.judges` protocol whose label of a row is `rule(row)` (probability
    1 on it). `calls` records the rows of every classify call."""

    def __init__(self, role: str, rule: Callable[[Mapping[str, str]], str], name: str | None = None):
        import hashlib

        from safety_evals.suites.judging import LABELS

        self.role, self.labels, self.rule = role, LABELS[role], rule
        self.name = name or f"fake-{role}"
        self.sha256 = hashlib.sha256(self.name.encode()).hexdigest()
        self.calls: list[list[Mapping[str, str]]] = []

    def identity(self) -> dict:
        return {"name": self.name, "sha256": self.sha256}

    def classify(self, rows: Sequence[Mapping[str, str]]) -> list[str]:
        self.calls.append(list(rows))
        return [self.rule(r) for r in rows]

    def predict_proba(self, rows: Sequence[Mapping[str, str]]):
        import numpy as np

        labels = self.classify(rows)
        out = np.zeros((len(labels), len(self.labels)))
        out[np.arange(len(labels)), [self.labels.index(lab) for lab in labels]] = 1.0
        return out


def table_judge(role: str, table: Mapping[str, str], default: str, key: str) -> FakeJudge:
    """FakeJudge labelling a row by `table[row[key]]`, else `default`."""
    return FakeJudge(role, lambda r: table.get(r[key], default))


# ---------------------------------------------------------------- tiny offline transformers artefacts

CORPUS = [
    "The cat sat on the mat. The dog ran in the park.",
    "Hello world, the quick brown fox jumps over the lazy dog.",
    "Is the response fully supported by the passage? Answer yes or no. 0 1 2 3",
    "premise: hypothesis: people men women old young rich poor",
]


def tiny_tokenizer(vocab_size: int = 320):
    """A byte-level BPE trained on CORPUS; encode adds <bos> like Gemma's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A",
        pair="<bos> $A <eos> $B",
        special_tokens=[("<bos>", tok.token_to_id("<bos>")), ("<eos>", tok.token_to_id("<eos>"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_gemma3(vocab_size: int, seed: int = 0, max_positions: int = 256):
    """A random 2-layer Gemma3 causal LM (float32, eval mode)."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=max_positions,
        sliding_window=8,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(cfg).eval()


def tiny_bert_classifier(vocab_size: int, labels: Sequence[str], seed: int = 0):
    """A random 1-layer BERT sequence classifier with the given id2label."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(cfg).eval()


def save_pretrained(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_model_dir(path: Path, seed: int = 0) -> Path:
    """A tiny random Gemma3 Hugging Face directory (config, safetensors, tokenizer) that `align.load`
    reads like a real checkpoint: the real decoder path of `align eval` in seconds. 1024 positions,
    because the tiny BPE spends many tokens on a real prompt wrapped in a chat turn with a system prompt."""
    tok = tiny_tokenizer()
    return save_pretrained(tiny_gemma3(len(tok), seed=seed, max_positions=1024), tok, path)
