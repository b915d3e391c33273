"""Loader errors name the file, the line/row and the field; the progress wrapper counts requests."""

import json

import pytest

from safety_evals import bbq, crows_pairs, data, hedging, stereoset
from safety_evals.lm_wrappers import ProgressLM
from tests.safety_evals.fakes import FakeLM


def test_jsonl_invalid_line(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(data.DataError, match=r"s.jsonl:2: invalid JSON"):
        data.read_jsonl(f)


def test_stereoset_bad_type_and_missing_field(tmp_path):
    row = {
        "type": "intersentence",
        "target": "t",
        "bias_type": "race",
        "context": "c",
        "stereotype": "s",
        "anti-stereotype": "a",
        "unrelated": "u",
    }
    f = tmp_path / "st.jsonl"
    f.write_text(json.dumps(row) + "\n" + json.dumps({**row, "type": "other"}) + "\n")
    with pytest.raises(data.DataError, match=r"st.jsonl:line 2: field 'type' is 'other'"):
        stereoset.load(str(f))
    del row["unrelated"]
    f.write_text(json.dumps(row) + "\n")
    with pytest.raises(data.DataError, match=r"st.jsonl:line 1: missing field 'unrelated'"):
        stereoset.load(str(f))


def test_crows_missing_column(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text(",sent_more,sent_less,bias_type\n0,a,b,age\n")
    with pytest.raises(data.DataError, match=r"c.csv:row 1: missing field 'stereo_antistereo'"):
        crows_pairs.load(str(f))


def test_bbq_missing_field_and_bad_unknown(tmp_path):
    with open("/work/shared/data/bbq/Age.jsonl", encoding="utf-8") as fh:
        good = json.loads(fh.readline())
    d = tmp_path / "bbq"
    d.mkdir()
    (d / "Age.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**good, "label": None}) + "\n")
    with pytest.raises(data.DataError, match=r"Age.jsonl:line 2: missing field 'label'"):
        bbq.load(str(d))
    two_unknown = {
        **good,
        "answer_info": {"ans0": ["x", "unknown"], "ans1": ["y", "unknown"], "ans2": ["z", "old"]},
    }
    (d / "Age.jsonl").write_text(json.dumps(two_unknown) + "\n")
    with pytest.raises(data.DataError, match=r"Age.jsonl:line 1: field 'answer_info' has 2 unknown"):
        bbq.load(str(d))


def test_selfaware_wrong_layout(tmp_path):
    f = tmp_path / "sa.json"
    f.write_text("[1, 2]")
    with pytest.raises(data.DataError, match=r"sa.json: expected a JSON object with key 'example'"):
        hedging.load(str(f))


class Bar:
    def __init__(self):
        self.total, self.n = 0, 0

    def update(self, k):
        self.n += k

    def refresh(self):
        pass


def test_progress_wrapper_chunks_and_counts():
    lm, bar = FakeLM(), Bar()
    p = ProgressLM(lm, bar, chunk=2)
    reqs = [("", "a"), ("", "b"), ("", "c")]
    assert p.loglikelihood(reqs) == lm.loglikelihood(reqs)
    assert [len(c) for c in lm.ll_calls[:2]] == [2, 1]
    out = p.generate(["x", "y", "z"], max_new_tokens=3, num_samples=1)
    assert out == [["I don't know."]] * 3 and (bar.total, bar.n) == (6, 6)
