"""Loader errors name the file, the line/row and the field; the progress wrapper counts requests."""

import csv
import gzip
import json
import re
from pathlib import Path

import pytest

from align.data import selfaware
from align.data.errors import DataError
from align.data_dir import data_path
from align.errors import MissingInput
from safety_evals.suites import attribution, bbq, crows_pairs, data, factuality, hedging, stereoset, toxicity
from safety_evals.lm.wrappers import ProgressLM
from tests.paths import DATA
from tests.safety_evals.fakes import FakeLM


def test_jsonl_invalid_line(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text('{"a": 1}\n\n{oops\n[1]\n')
    with pytest.raises(data.DataError, match=r"s.jsonl, line 3: invalid JSON: .* at column 2$"):
        data.read_jsonl(f)  # the blank line is skipped but counted
    f.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(data.DataError, match=r"s.jsonl, line 2: expected a JSON object, got list$"):
        data.read_jsonl(f)


def test_one_reader_and_one_data_error_with_align(tmp_path):
    """safety_evals reads files with align.data.files (UTF-8, optional BOM also under gzip) and raises
    align's DataError, so `except DataError` means the same thing in both packages."""
    assert data.DataError is DataError
    f = tmp_path / "s.jsonl.gz"
    f.write_bytes(gzip.compress('\ufeff{"a": "\u00e9"}\n'.encode()))
    assert data.read_jsonl(f) == [{"a": "\u00e9"}]
    tsv = tmp_path / "b.tsv"
    tsv.write_text('x\ty\n"a\tb"\n')  # QUOTE_NONE: the quote is text, the tab still splits
    assert data.read_csv(tsv, delimiter="\t", quoting=csv.QUOTE_NONE) == [{"x": '"a', "y": 'b"'}]
    bad = tmp_path / "c.csv"
    bad.write_text("x,y\n1,2\n3\n")
    with pytest.raises(DataError, match=r"c.csv, line 3: 1 fields where the header has 2$"):
        data.read_csv(bad)


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


def test_require_rejects_blank_and_non_text():
    row = {"a": "x", "b": " \t", "c": 3}
    data.require(row, ("a", "b", "c"), "f.csv:row 4")  # presence only, by default
    with pytest.raises(data.DataError, match=r"^f.csv:row 4: empty field 'b'$"):
        data.require(row, ("a", "b"), "f.csv:row 4", text=("a", "b"))
    with pytest.raises(data.DataError, match=r"^f.csv:row 4: field 'c' is int, expected text$"):
        data.require(row, ("c",), "f.csv:row 4", text=("c",))


def test_crows_blank_text_and_unknown_direction(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text(",sent_more,sent_less,stereo_antistereo,bias_type\n0,a,b,stereo,age\n1,a, ,stereo,age\n")
    with pytest.raises(data.DataError, match=r"c.csv:row 2: empty field 'sent_less'"):
        crows_pairs.load(str(f))
    f.write_text(",sent_more,sent_less,stereo_antistereo,bias_type\n0,a,b,both,age\n")
    with pytest.raises(data.DataError, match=r"c.csv:row 1: field 'stereo_antistereo' is 'both'"):
        crows_pairs.load(str(f))


def test_stereoset_and_factuality_blank_text(tmp_path):
    row = {
        "type": "intersentence",
        "target": "t",
        "bias_type": "race",
        "context": "c",
        "stereotype": "s",
        "anti-stereotype": "",
        "unrelated": "u",
    }
    f = tmp_path / "st.jsonl"
    f.write_text(json.dumps(row) + "\n")
    with pytest.raises(data.DataError, match=r"st.jsonl:line 1: empty field 'anti-stereotype'"):
        stereoset.load(str(f))
    (tmp_path / "TruthfulQA.csv").write_text(
        "Question,Best Answer,Correct Answers,Incorrect Answers\nWhy?,So,,No\n"
    )
    (tmp_path / "mc_task.json").write_text("[]")
    with pytest.raises(data.DataError, match=r"TruthfulQA.csv:line 2: empty field 'Correct Answers'"):
        factuality.load(str(tmp_path))


def test_bbq_malformed_metadata(tmp_path):
    with open(DATA / "bbq/Age.jsonl", encoding="utf-8") as fh:
        good = json.loads(fh.readline())
    d = tmp_path / "bbq"
    d.mkdir()
    cases = {
        "answer_info": [
            {"ans0": ["x", "old"], "ans1": ["y", "nonOld"]},
            ["x"],
            {**good["answer_info"], "ans1": []},
        ],
        "additional_metadata": [{"subcategory": "None"}, {"stereotyped_groups": "old"}, "old"],
    }
    for field, values in cases.items():
        for v in values:  # each used to escape as a bare KeyError / IndexError / TypeError
            (d / "Age.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**good, field: v}) + "\n")
            with pytest.raises(data.DataError, match=rf"Age.jsonl:line 2: field '{field}' needs"):
                bbq.load(str(d))
    (d / "Age.jsonl").write_text(json.dumps({**good, "question": "  "}) + "\n")
    with pytest.raises(data.DataError, match=r"Age.jsonl:line 1: empty field 'question'"):
        bbq.load(str(d))


def test_bbq_missing_field_and_bad_unknown(tmp_path):
    with open(DATA / "bbq/Age.jsonl", encoding="utf-8") as fh:
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


def test_hedging_reads_selfaware_with_the_training_reader(tmp_path):
    """One reader for SelfAware.json (align.data.selfaware): the suite's items and hash are its own,
    and a row it refuses (an answerable question without a gold answer: no model could answer it
    right) is refused by the suite too, naming the row's JSON path and the field."""
    source = str(DATA / "selfaware" / "SelfAware.json")
    qs, info = hedging.load(source)
    items, sha = selfaware.read_selfaware(source)
    assert qs == items and len(qs) == 3369 and sum(not q.answerable for q in qs) == 1032
    # the file's own sha256, as the data directory's README lists it
    assert info.sha256 == sha == "32929585ffdd4048f35f7f167720722eb8ddcf59908ffc958da2f84ea634dc54"
    f = tmp_path / "sa.json"
    row = {"question_id": 7, "question": "Who?", "answerable": True, "answer": None}
    f.write_text(json.dumps({"example": [{**row, "answer": ["Ann"]}, row]}))
    with pytest.raises(DataError, match=r"sa.json: example\[1\]: field 'answer' is empty on an answerable"):
        hedging.load(str(f))
    f.write_text(json.dumps({"example": [{**row, "question": " ", "answerable": False}]}))
    with pytest.raises(DataError, match=r"sa.json: example\[0\]: field 'question' must be non-blank text"):
        hedging.load(str(f))
    hub = [{**row, "answer": ["Ann"]}, {**row, "answerable": False}]  # as a hub set's rows arrive
    assert selfaware.qa_items(hub, "org/set") == [
        selfaware.QAItem("7", "Who?", True, ("Ann",)),
        selfaware.QAItem("7", "Who?", False),
    ]


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


@pytest.mark.parametrize("suite", [attribution, bbq, crows_pairs, factuality, hedging, stereoset, toxicity])
def test_a_missing_local_source_is_named_not_looked_up_on_the_hub(suite, tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_DATA_DIR", str(tmp_path))  # as if the data lived elsewhere
    relative = Path(suite.DEFAULT_SOURCE).relative_to(DATA)  # the default names a file under the data dir
    missing = data_path(str(relative))
    named = re.escape(f"data path {missing} does not exist") + ".*ALIGN_DATA_DIR"
    with pytest.raises(MissingInput, match=named):
        suite.load(missing)
    with pytest.raises(MissingInput, match="does not exist$"):  # outside the data dir: no hint
        suite.load(str(tmp_path.parent / "nowhere" / relative.name))
