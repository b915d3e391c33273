"""The align JAX model as an lm-evaluation-harness model, registered under the name "align".

    align lm-eval run --model align --model_args model=gemma3-270m --tasks crows_pairs_english --limit 50
    python -m safety_evals.lm.lm_eval_model --model align --model_args model=gemma3-270m --tasks ...

Both are lm-eval's own command line (`lm_eval.__main__.cli_evaluate`: every option, task and output
layout of lm-eval 0.4.x) with this module imported first. A bare `lm_eval --model align` cannot find
it: lm-eval 0.4.13 resolves `--model` only from its own MODEL_MAPPING and from classes registered in
the running process (its registry reads no entry-point group), so from Python, import this module
and call `lm_eval.simple_evaluate(model="align", model_args="model=gemma3-270m", ...)`.

Offline, a task reads local files through `--include_path DIR` and a YAML there that includes lm-eval's
own task and swaps the dataset (the name may stay the task's own, e.g. crows_pairs_english):
    include: <site-packages>/lm_eval/tasks/crows_pairs/crows_pairs_english.yaml
    task: crows_pairs_english
    dataset_path: csv
    dataset_name: null
    dataset_kwargs: {data_files: {test: <data dir>/crows_pairs/crows_pairs_anonymized.csv}}

model_args: model (an align model spec: embedded name, *.gguf, HF directory, hub id, preset:tiny),
batch_size, max_length (scoring window), dtype (float32 | bfloat16), tokenizer.

The three request types run on `JaxLM`, whose encoding and scoring already follow HFLM's:
loglikelihood -> JaxLM.loglikelihood; loglikelihood_rolling -> lm-eval's own disjoint rolling
windows (`get_rolling_token_windows`, prefix token BOS, context length 1, text encoded with BOS as
HFLM does for Gemma) scored as token requests and summed; generate_until -> JaxLM.generate (greedy
unless `do_sample` and a temperature > 0; the tokenizer's stop ids always; `max_gen_toks`, default
256), then `until` cut as HFLM cuts (`protocol.cut_at_stop`: at any occurrence, even in leading blank
lines, where our suites' `truncate_at_stop` looks past them), so lm-eval's tasks score what HFLM gives.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from safety_evals.lm.jax_lm import JaxLM
from safety_evals.lm.protocol import cut_at_stop

NAME = "align"
MAX_GEN_TOKS = 256  # HFLM's default


def _batch_size(value) -> int:
    """lm-eval passes --batch_size through as given ("8", 8, or "auto"); auto: 8 rows."""
    return int(value) if str(value).isdigit() else 8


@register_model(NAME)
class AlignLM(LM):
    """lm-eval's LM interface over `JaxLM` (see the module docstring)."""

    def __init__(
        self,
        model: str = "gemma3-270m",
        batch_size=8,
        max_length: int | None = None,
        dtype: str = "float32",
        tokenizer: str | None = None,
        lm: JaxLM | None = None,
        **unused,  # lm-eval's own extras (device, max_batch_size): JAX picks its devices itself
    ):
        super().__init__()
        if lm is None:
            from align.hub import DTYPES, load

            loaded = load(model, param_dtype=DTYPES[dtype], dtype=DTYPES[dtype], tokenizer=tokenizer)
            lm = JaxLM.from_loaded(
                loaded, name=model, batch_size=_batch_size(batch_size), max_length=max_length
            )
        self.lm = lm

    @property
    def max_length(self) -> int:
        return self.lm.max_length

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        scores = self.lm.loglikelihood([tuple(r.args) for r in requests])
        return [(s.total, s.is_greedy) for s in scores]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        per_doc = [self.rolling_windows(r.args[0]) for r in requests]
        flat = [w for windows in per_doc for w in windows]
        scores = iter(self.lm.loglikelihood_tokens(flat))
        return [sum(next(scores).total for _ in windows) for windows in per_doc]

    def rolling_windows(self, text: str) -> list[tuple[list[int], list[int]]]:
        """HFLM's disjoint windows of `text`: every token scored once, the first after the prefix token.

        As HFLM, the text is encoded with special tokens: for Gemma (BOS always added) the first token
        scored is BOS itself, after the BOS prefix; lm-eval's word/byte perplexities include it."""
        tokens = self.lm.encode(text, True)
        windows = get_rolling_token_windows(
            token_list=tokens, prefix_token=self.lm.prefix_id, max_seq_len=self.max_length, context_len=1
        )
        return [make_disjoint_window(w) for w in windows]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):  # one generate call per distinct generation setting
            groups.setdefault(_settings(r.args[1]), []).append(i)
        for (until, max_new, temperature), idx in groups.items():
            texts = self.lm.generate(
                [requests[i].args[0] for i in idx],
                max_new_tokens=max_new,
                temperature=temperature,
            )  # stop strings only cut the decoded text, so cutting here costs no extra tokens
            for i, samples in zip(idx, texts):
                out[i] = cut_at_stop(samples[0], until)
        return out  # type: ignore[return-value]


def _settings(kwargs: dict) -> tuple[tuple[str, ...], int, float]:
    """(until, max_gen_toks, temperature) of one request's generation kwargs, as HFLM reads them."""
    kwargs = dict(kwargs or {})
    until = kwargs.pop("until", None) or ()
    until = (until,) if isinstance(until, str) else tuple(until)
    sample = kwargs.get("do_sample", False)
    temperature = float(kwargs.get("temperature", 0.0)) if sample else 0.0
    return until, int(kwargs.get("max_gen_toks", MAX_GEN_TOKS)), temperature


def main(argv: Sequence[str] | None = None) -> None:
    """lm-eval's command line with the "align" model registered (this module is imported)."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm-eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()


if __name__ == "__main__":
    main()
