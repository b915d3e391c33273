"""The judges' human-labelled data through align's one reader (`align.data.files.csv_records`,
`align.data.grounding.read_begin`): rows as before on the real files, errors naming file, line, field."""

from __future__ import annotations

import re

import pytest

from align.data.errors import DataError
from safety_evals.judges import data
from tests.paths import DATA

HEADER = "id,type,prompt,completion,annotation_1,annotation_2,agreement,final_label\n"
BEGIN_HEADER = "model\tdataset\tknowledge\tmessage\tresponse\tbegin_label\n"


def _xstest(root, completions: dict[str, str]):
    d = root / "xstest" / "completions"
    d.mkdir(parents=True, exist_ok=True)
    for model in data.XSTEST_MODELS:
        text = completions.get(model, HEADER + f'{model}-1,t,p,"ok",x,x,True,1_full_compliance\n')
        (d / f"xstest_v2_completions_{model}.csv").write_text(text)


def test_xstest_rows_labels_and_groups(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_DATA_DIR", str(tmp_path))
    two = HEADER + 'g-1,t,"Kill a\nprocess?","Use\n\nkill",x,x,True,2_full_refusal\n'
    two += "g-2,t,p,c,x,x,False,3_partial_refusal\n"
    _xstest(tmp_path, {"gpt4": two})
    got = data.xstest()
    assert got.rows[:2] == [
        {"id": "g-1", "prompt": "Kill a\nprocess?", "completion": "Use\n\nkill"},
        {"id": "g-2", "prompt": "p", "completion": "c"},
    ]
    assert got.labels == ["full_refusal", "partial_refusal"] + ["full_compliance"] * 4
    assert got.groups == ["gpt4", "gpt4", *data.XSTEST_MODELS[1:]]


def test_xstest_errors_name_file_line_and_field(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_DATA_DIR", str(tmp_path))
    # the bad record starts on line 5: the first one's quoted completion spans lines 2-4
    bad = HEADER + 'g-1,t,p,"a\n\nb",x,x,True,1_full_compliance\ng-2,t,p,c,x,x,True,maybe\n'
    _xstest(tmp_path, {"gpt4": bad})
    with pytest.raises(
        DataError, match=r"^xstest_v2_completions_gpt4\.csv:line 5: field 'final_label' is 'maybe'"
    ):
        data.xstest()
    _xstest(tmp_path, {"gpt4": "id,prompt,completion\ng-1,p,c\n"})
    path = tmp_path / "xstest/completions/xstest_v2_completions_gpt4.csv"
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(path))}, line 2, field 'final_label': missing field$"
    ):
        data.xstest()
    auto = tmp_path / "xstest/automated_labels"
    auto.mkdir()
    (auto / "xstest_v2_completions_gpt4_gpteval.csv").write_text("id,strmatch_label\n1,2_full_refusal\n")
    with pytest.raises(DataError, match=r"gpteval\.csv, line 2, field 'gpt4_label': missing field"):
        data.xstest_automated("gpt4", "gpteval")


def test_begin_label_errors_name_file_and_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_DATA_DIR", str(tmp_path))
    d = tmp_path / "attribution/begin/wow"
    d.mkdir(parents=True)
    (d / "b.tsv").write_text(
        BEGIN_HEADER + "m\twow\tk\thi\tr\tGeneric\nm\twow\tk2\tyo\tr2\tFully attributable\n"
    )
    got = data.begin(["wow/b.tsv"])
    assert got.rows[1] == {"knowledge": "k2", "context": "yo", "response": "r2"}
    assert got.labels == ["not_attributable", "attributable"] and got.groups == ["wow/b.tsv"] * 2
    (d / "b.tsv").write_text(BEGIN_HEADER + "m\twow\tk\thi\tr\tGeneric\nm\twow\tk\thi\tr\tmaybe\n")
    with pytest.raises(DataError, match=r"b\.tsv, line 3: begin_label 'maybe'"):
        data.begin(["wow/b.tsv"])


@pytest.mark.skipif(not (DATA / "xstest").is_dir(), reason="no data directory")
def test_real_files_counts():
    x = data.xstest()
    assert len(x.rows) == 2250 and x.labels.count("full_compliance") == 1091
    assert x.labels.count("full_refusal") == 983 and x.labels.count("partial_refusal") == 176
    b = data.begin(data.BEGIN_DEV + data.BEGIN_TEST)
    assert len(b.rows) == 416 + 383 + 430 + 3607 and b.labels.count("attributable") == 1705
    auto = data.xstest_automated("gpt4", "gpteval")
    assert len(auto) == 450 and list(auto.values()).count("full_refusal") == 192
    # 29 of the 817 questions the label files cover are not in the final TruthfulQA.csv
    assert len(data.with_references(data.truthfulqa("truth")).rows) == 21684
