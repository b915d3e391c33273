"""Verifiable instructions for the developer variant: RL with a reward its checker computes (RLVR).

Training prompts are HH helpful-base questions (the first user turn of each dialogue) with one or two
format constraints appended ("answer in fewer than 80 words", "no commas", "wrap it in JSON", ...).
The constraint texts and their checkers are the instruction classes of lm-eval's IFEval task
(`lm_eval.tasks.ifeval.instructions_registry`: `build_description` draws a constraint, the IFEval
checker `test_instruction_following_strict` judges a response), imported, not copied; the rows have
IFEval's schema (key, prompt, instruction_id_list, kwargs). The reward is the checker's verdict: 1 when
the response follows every instruction of its prompt, else 0. IFEval's own prompts
(`ifeval/input_data.jsonl`) stay evaluation-only: `check_disjoint` refuses a training prompt that is,
or contains the question of, an IFEval prompt.

Two checkers need NLTK's punkt_tab (safety_evals.suites.ifeval.NEEDS_PUNKT). As the IFEval suite does,
building prompts without it stops and says where to put it, unless `without_punkt=True` leaves those
instruction types out.

    python -m pipelines.stages.instructions runs/instructions.jsonl   # build the prompt file, then:
    data:   {path: runs/instructions.jsonl}
    reward: {rules: [{kind: instructions, path: runs/instructions.jsonl}]}

Each row also carries its prompt as one user turn (`messages`), so that RL reads it as a chat prompt
(the policy's chat template, a variant's system prompt) rather than as bare text.

In `align pipeline`, the prompt file can be left to the pipeline: a rule without `path`, in the
rlhf section's reward or in a variant's `reward_rules`, and a prompt-mixture entry whose path is
`pipeline:instructions` (PIPELINE_PROMPTS) both read `<output_dir>/instructions/prompts.jsonl`,
which the pipeline's `instructions` stage writes once, before RL (every HH helpful-base test
question; resumable: skipped when the file is there, written whole or not at all):

    variants:                                        # configs/variants/gemma3_270m.yaml
      - name: developer
        data:
          - {path: "pipeline:instructions", weight: 0.5}
          - {path: "${ALIGN_DATA_DIR}/hh_rlhf/helpful-base/test.jsonl.gz", weight: 0.5}
        reward_rules:
          - {kind: instructions, weight: 1.0}
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp

from align import distributed
from align.data import Tokenizer, load_records
from align.data_dir import data_path
from align.errors import InvalidInput, MissingInput
from align.fileio import write_text_atomic
from safety_evals.suites import ifeval

SOURCE = data_path("hh_rlhf/helpful-base/test.jsonl.gz")
IFEVAL = data_path("ifeval/input_data.jsonl")
REPEAT = "combination:repeat_prompt"  # its description quotes the question: built with it
PIPELINE_PROMPTS = "pipeline:instructions"  # a prompt mixture's path for the pipeline's prompt file
RUN_FILE = "instructions/prompts.jsonl"  # that file, under the pipeline's output_dir


def instruction_ids(without_punkt: bool = False) -> list[str]:
    """The IFEval instruction types to train on: all of lm-eval's, less those needing a missing Punkt."""
    from lm_eval.tasks.ifeval import instructions_registry  # lazily: importing it makes NLTK try a download

    from safety_evals.suites import ifeval

    ids = sorted(instructions_registry.INSTRUCTION_DICT)
    if ifeval.punkt_available():
        return ids
    if not without_punkt:
        raise MissingInput(f"instruction prompts: {sorted(ifeval.NEEDS_PUNKT)} need it. {ifeval.PUNKT_HELP}")
    return [i for i in ids if i not in ifeval.NEEDS_PUNKT]


def questions(source: str = SOURCE, limit: int | None = None) -> list[str]:
    """The first user turn of each dialogue in `source`, each question once, in file order."""
    seen: dict[str, None] = {}
    for example in load_records(source, kind="prompt", skip_invalid=True):
        first = example.prompt if isinstance(example.prompt, str) else example.prompt[0]["content"]
        seen.setdefault(first.strip(), None)
    out = [q for q in seen if q]
    return out[:limit]


def _pick(rng: random.Random, ids: Sequence[str], n: int) -> list[str]:
    """Up to n instruction types that lm-eval's INSTRUCTION_CONFLICTS allows together (fewer when the
    first conflicts with every other, as detectable_format:constrained_response does)."""
    from lm_eval.tasks.ifeval import instructions_registry as registry

    chosen: list[str] = []
    while len(chosen) < n:
        free = [i for i in ids if all(i != c and i not in registry.INSTRUCTION_CONFLICTS[c] for c in chosen)]
        if not free:
            break
        chosen.append(rng.choice(free))
    return chosen


def build_rows(qs: Sequence[str], ids: Sequence[str], seed: int = 0, max_instructions: int = 2) -> list[dict]:
    """One IFEval-schema row per question: the question, a blank line, then the constraint texts.

    lm-eval draws the unspecified arguments of a description from Python's global `random`: it is
    seeded per row (and restored after), so the rows depend only on (qs, ids, seed).
    """
    from lm_eval.tasks.ifeval import instructions_registry as registry

    rng, saved, rows = random.Random(seed), random.getstate(), []
    try:
        for key, q in enumerate(qs):
            chosen = _pick(rng, ids, rng.randint(1, max_instructions))
            texts, kwargs = [], []
            for iid in chosen:
                random.seed(rng.randrange(1 << 31))
                inst = registry.INSTRUCTION_DICT[iid](iid)
                texts.append(inst.build_description(**({"prompt_to_repeat": q} if iid == REPEAT else {})))
                kwargs.append({k: v for k, v in (inst.get_instruction_args() or {}).items() if v is not None})
            constraint = " ".join(texts)
            prompt = f"{q}\n\n{constraint}"
            rows.append(
                {
                    "key": key,
                    "prompt": prompt,
                    "messages": [{"role": "user", "content": prompt}],  # read as a chat prompt by RL
                    "constraint": constraint,
                    "instruction_id_list": chosen,
                    "kwargs": kwargs,
                }
            )
    finally:
        random.setstate(saved)
    return rows


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def check_disjoint(rows: Sequence[dict], questions_of_rows: Sequence[str], ifeval_path: str = IFEVAL) -> None:
    """Raise InvalidInput if a training prompt is an IFEval prompt or its question is inside one."""
    evals = [_norm(item.prompt) for item in ifeval.load(ifeval_path)[0]]  # the ifeval suite's reader
    exact = set(evals)
    for row, q in zip(rows, questions_of_rows, strict=True):
        nq = _norm(q)
        if _norm(row["prompt"]) in exact or (len(nq) >= 20 and any(nq in e for e in evals)):
            raise InvalidInput(f"training prompt key {row['key']} overlaps an IFEval prompt ({ifeval_path})")


def write_rows(rows: Sequence[dict], path: str | Path) -> None:
    """JSONL, written whole or not at all: a crash leaves no half file that a rerun would take as done."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_prompt_file(path: str | Path, limit: int | None = None, source: str = SOURCE) -> list[dict]:
    """The training prompts of `source`'s questions, checked disjoint from IFEval, written to `path` (by
    the first process); every instruction type, less those needing NLTK's Punkt when it is missing."""
    qs = questions(source, limit)
    rows = build_rows(qs, instruction_ids(without_punkt=True))
    check_disjoint(rows, qs)
    if distributed.is_primary():
        write_rows(rows, path)
    distributed.barrier("instruction-prompts")
    return rows


def read_rows(path: str | Path) -> list[dict]:
    rows = []
    with open(path) as f:
        for i, line in enumerate(f):
            row = json.loads(line)
            for field in ("prompt", "constraint", "instruction_id_list", "kwargs"):
                if field not in row:
                    raise InvalidInput(f"{path}: line {i + 1}: field {field!r} missing")
            rows.append(row)
    return rows


def follows_all(row: dict, response: str) -> bool:
    """Whether `response` follows every instruction of `row` (lm-eval's strict IFEval checker)."""
    import langdetect

    from safety_evals.suites.ifeval import Item, follows

    langdetect.DetectorFactory.seed = 0  # as the IFEval suite: the language checks repeatable
    item = Item(
        int(row.get("key", 0)), row["prompt"], tuple(row["instruction_id_list"]), tuple(row["kwargs"])
    )
    strict, _ = follows(item, response)
    return all(strict)


class InstructionReward:
    """RewardFn: r = 1 if the response follows every instruction its prompt carries, 0 if it breaks
    one, and 0 on a prompt that carries none of the file's constraints.

    The prompt is recognised by its constraint text, the longest one of `rows` found in the decoded
    prompt (a prompt cut from the left keeps its end, where the constraint is; "at least 154 words"
    wins over "at least 15 words"). A prompt without one is a plain prompt of a mixed RL batch (e.g.
    the developer variant's instruction and HH prompts, the helpfulness RM scoring both), or one whose
    constraint max_prompt_length cut, which the policy could not read: it gets a constant 0, which
    moves no GRPO group baseline and which PPO's critic learns as that prompt's value, so only the
    prompts with a constraint carry this signal. That the prompts include the rule's file at all is
    checked with the config (rewards.check_rules), so the zero never hides a rule reading the wrong file.
    """

    def __init__(self, rows: Sequence[dict], tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.by_constraint = {row["constraint"]: row for row in rows}
        self.keys = sorted(self.by_constraint, key=len, reverse=True)

    @classmethod
    def from_file(cls, path: str, tokenizer: Tokenizer) -> InstructionReward:
        return cls(read_rows(path), tokenizer)

    def row_of(self, prompt_text: str) -> dict | None:
        """The row whose constraint the prompt carries (the longest found), or None for a plain prompt."""
        return next((self.by_constraint[k] for k in self.keys if k in prompt_text), None)

    def score(self, prompt_text: str, response_text: str) -> float:
        row = self.row_of(prompt_text)
        return 0.0 if row is None else float(follows_all(row, response_text))

    def __call__(self, prompt, prompt_mask, response, response_mask):
        # every process judges every row (rows spread over hosts are gathered: collectives)
        prompt, response = distributed.host_array(prompt), distributed.host_array(response)
        pm, rm = distributed.host_array(prompt_mask) > 0, distributed.host_array(response_mask) > 0
        scores = [
            self.score(self.tokenizer.decode(p[m]), self.tokenizer.decode(r[n]))
            for p, m, r, n in zip(prompt, pm, response, rm, strict=True)
        ]
        return jnp.asarray(scores, jnp.float32)


def fill_rules(rules: Sequence, path: str | Path) -> tuple:
    """`rules` (RuleSpec) with `path` given to each instructions rule that names no prompt file."""
    return tuple(
        dataclasses.replace(r, path=str(path)) if r.kind == "instructions" and not r.path else r
        for r in rules
    )


def fill_sources(sources: Sequence, path: str | Path) -> tuple:
    """A prompt mixture (PromptSource) with `path` in place of PIPELINE_PROMPTS."""
    return tuple(dataclasses.replace(s, path=str(path)) if s.path == PIPELINE_PROMPTS else s for s in sources)


def pipeline_stages(pipeline) -> list:
    """The `instructions` stage when an RL run of `pipeline` (pipelines.pipeline.Pipeline) reads the
    pipeline's prompt file: written once, before RL; a rerun finds it and skips the stage."""
    from pipelines.stage_runner import Stage

    path = pipeline.instructions_file()
    read = lambda c: {r.path for r in c.reward.rules} | {s.path for s in c.data.mixture}  # noqa: E731
    if not any(str(path) in read(c) for c in pipeline.rl_configs()):
        return []
    return [Stage("instructions", path, lambda: write_prompt_file(path), "verifiable-instruction prompts")]


def main(argv: Sequence[str] | None = None) -> int:
    """python -m pipelines.stages.instructions OUT [LIMIT]: write the training prompts, checked disjoint."""
    argv = sys.argv[1:] if argv is None else argv
    rows = write_prompt_file(argv[0], limit=int(argv[1]) if len(argv) > 1 else None)
    print(f"{len(rows)} prompts -> {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
