"""A suite whose default file under the data directory is absent reads its public hub dataset
(safety_evals.api.HUB_FALLBACK); the user's --data wins; IFEval's hub rows lose their null kwargs."""

import datasets
import pytest

from safety_evals import api
from safety_evals.suites import ifeval


def test_fallback_only_when_the_default_is_absent(tmp_path):
    present = tmp_path / "crows.csv"
    present.write_text("x")
    options = api.EvalOptions(model="m", suites=("crows_pairs",))
    assert api._source(options, "crows_pairs", str(present)) == str(present)
    missing = str(tmp_path / "absent.csv")
    assert api._source(options, "crows_pairs", missing) == "jannalu/crows_pairs_multilingual"
    assert api._hub_config(options, "crows_pairs", missing) == "english"
    assert api._hub_config(options, "crows_pairs", str(present)) is None
    chosen = api.EvalOptions(model="m", suites=("crows_pairs",), data={"crows_pairs": "my/set"})
    assert (
        api._source(chosen, "crows_pairs", missing) == "my/set"
        and api._hub_config(chosen, "crows_pairs", missing) is None
    )
    assert api._source(options, "hedging", missing) == missing  # no hub set: the missing file is reported


def test_ifeval_reads_the_hub_layout(monkeypatch):
    rows = [
        {
            "key": 7,
            "prompt": "Write two sentences.",
            "instruction_id_list": ["length_constraints:number_sentences"],
            # the hub's struct column: every instruction's keys, null where unused
            "kwargs": [{"num_sentences": 2, "relation": "at least", "keywords": None}],
        }
    ]
    seen = []

    def load_dataset(name, config=None, split=None, **kw):
        seen.append((name, config, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    items, info = ifeval.load("google/IFEval")
    assert seen == [("google/IFEval", None, "train")]
    assert items[0].kwargs == ({"num_sentences": 2, "relation": "at least"},)
    assert (info.source, info.n) == ("google/IFEval", 1) and len(info.sha256) == 64
    with pytest.raises(Exception, match="does not exist|not found|missing"):
        ifeval.load("/no/such/dir/input_data.jsonl")  # a local-looking name is never a hub lookup
