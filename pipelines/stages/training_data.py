"""Training sources of any format (align.data.sources), the split records they leave in a run
directory, and the check that an eval never scores what a stage trained on.

    sources:                                   # an SFT data section (RL prompt mixtures alike)
      - {format: selfaware, path: ".../selfaware/SelfAware.json", seed: 7}
      - {format: begin, path: ".../attribution/begin", seed: 7}
      - {path: ".../hh_rlhf/helpful-base/test.jsonl.gz", limit: 400}

A benchmark source trains on its "train" part only; its held-out part is what the hedging and
attribution suites score with the eval option `heldout_seed` set to the same seed, which
`check_eval_split` demands of a pipeline config before anything runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from align import checks
from align.distributed import is_primary
from align.data.sources import check_format, read_source
from align.errors import InvalidInput

SPLITS_FILE = "splits.json"
# benchmark format -> the eval suite that scores its held-out part
EVAL_SUITE = {"selfaware": "hedging", "begin": "attribution"}


@dataclasses.dataclass(frozen=True)
class DataSource:
    """One training source; `format` picks its reader (align.data.sources.FORMATS)."""

    path: str
    format: str = "records"
    split: str = "train"  # records: the file split of a directory; benchmark formats: train only
    limit: int | None = None
    seed: int = 0  # benchmark formats: the train / held-out split's seed (the eval's heldout_seed)
    weight: float = 1.0  # share of an RL prompt mixture (SFT uses every example of every source)

    def __post_init__(self):
        checks.at_least(self, 1, "limit", optional=True)
        checks.at_least(self, 0, "seed")
        checks.positive_number(self, "weight")
        check_format(self.format, self.split, "data.sources[]")
        if self.format != "records" and self.split != "train":
            raise InvalidInput(
                f"data.sources[].split: {self.split!r}; a {self.format} source trains on its train part only"
            )


def judge_passages() -> dict[str, set[str]]:
    """The BEGIN passages the attribution judge trains or is validated on (kept from policy data)."""
    from safety_evals.judges.specs import begin_judge_passages

    return begin_judge_passages()


def read(source: DataSource, *, prompts_only: bool = False, skip_invalid: bool = True):
    """align.data.sources.read_source for one configured source."""
    return read_source(
        source.path,
        source.format,
        split=source.split,
        limit=source.limit,
        seed=source.seed,
        prompts_only=prompts_only,
        skip_invalid=skip_invalid,
        judge_passages=judge_passages() if source.format == "begin" else None,
    )


def read_all(sources: Sequence[DataSource], *, skip_invalid: bool = True) -> tuple[list, dict, dict]:
    """(every source's examples in order, {"sources": [reports]}, {format: split record})."""
    examples, reports, records = [], [], {}
    for s in sources:
        data = read(s, skip_invalid=skip_invalid)
        examples += data.examples
        reports.append(data.report)
        if data.record is not None:
            records[s.format] = data.record
    return examples, {"sources": reports}, records


def write_split_records(out: str | Path, records: dict) -> Path | None:
    """splits.json in the run directory: per benchmark format its seed, file hash and ids per side."""
    if not records:
        return None
    path = Path(out) / SPLITS_FILE
    if is_primary():  # every process reads the same sources; one writes the record
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, indent=1))
    return path


def check_eval_split(sources: Iterable[DataSource], suites: Sequence[str], heldout_seed, where: str) -> None:
    """InvalidInput unless every suite that scores a trained-on benchmark evaluates only its held-out
    part with the training seed (eval option heldout_seed)."""
    for s in sources:
        suite = EVAL_SUITE.get(s.format)
        if suite in suites and heldout_seed != s.seed:
            raise InvalidInput(
                f"{where}: the {suite} suite would score {s.format} questions the policy trained on; set "
                f"eval.options.heldout_seed: {s.seed} (the training source's seed; it is {heldout_seed})"
            )
