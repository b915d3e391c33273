"""scripts/label_agreement.py: per-example label agreement with a reference results document."""

import json

from tests.scripts import load_script

agree = load_script("scripts/label_agreement.py")


def _doc(labels):
    rows = [{"id": str(i), "metric": "m", "label": lab} for i, lab in enumerate(labels)]
    return {"suites": {"hedging": {"examples": rows}, "empty": {"examples": []}}}


def test_agreement_counts_matching_labels_on_shared_examples(tmp_path, capsys):
    ref, other = _doc(["hedge", "answer", "hedge", "answer"]), _doc(["hedge", "hedge", "hedge"])
    assert agree.agreement(agree.labels(ref), agree.labels(other)) == {"hedging": (2, 3)}
    paths = []
    for name, doc in (("ref", ref), ("ref_copy", ref)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    agree.main([str(p) for p in paths])
    row = json.loads(capsys.readouterr().out.strip())
    assert (row["agree"], row["n"], row["rate"]) == (4, 4, 1.0) and row["ci95"][1] == 1.0


def test_paired_difference_is_the_rate_gap_and_zero_for_a_copy():
    ref = agree.labels(_doc(["hedge", "answer", "hedge", "answer"]))
    a = agree.labels(_doc(["hedge", "answer", "hedge", "hedge"]))  # agrees on 3 of 4
    b = agree.labels(_doc(["answer", "answer", "answer", "hedge"]))  # agrees on 1 of 4
    delta, lo, hi, n = agree.paired_difference(ref, a, b)["hedging"]
    # per-id gaps 1, 0, 1, 0: a resample is all zeros (or all ones) with probability 1/16 > 2.5%,
    # so the percentile interval is exactly [0, 1]; no interval claims a from four examples
    assert (delta, lo, hi, n) == (0.5, 0.0, 1.0, 4)
    assert agree.paired_difference(ref, a, a)["hedging"] == (0.0, 0.0, 0.0, 4)


def test_paired_difference_resamples_ids_with_all_their_labels():
    # three ids with two metrics each; a beats b on both labels of id 0 only (delta 2/6). Drawing
    # id 0 three times (p = 1/27 > 2.5%) gives delta 1, so the upper bound is 1; resampling the six
    # labels one by one would put it at 4/6 (five or six of the two winning labels: p = 0.018)
    rows = lambda labs: [  # noqa: E731
        {"id": str(i // 2), "metric": "m" + str(i % 2), "label": lab} for i, lab in enumerate(labs)
    ]
    doc = lambda labs: {"suites": {"factuality": {"examples": rows(labs)}}}  # noqa: E731
    ref, a, b = (agree.labels(doc(x)) for x in (["t"] * 6, ["t"] * 6, ["f", "f"] + ["t"] * 4))
    delta, lo, hi, n = agree.paired_difference(ref, a, b)["factuality"]
    assert (round(delta, 12), lo, hi, n) == (round(1 / 3, 12), 0.0, 1.0, 6)
    split = agree.labels(doc(["t"] * 6), by_metric=True)
    assert sorted(split) == ["factuality/m0", "factuality/m1"] and len(split["factuality/m0"]) == 3


def test_main_prints_a_difference_row_per_pair(tmp_path, capsys):
    paths = []
    for name, labs in (("ref", ["hedge", "answer"]), ("a", ["hedge", "answer"]), ("b", ["answer", "answer"])):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_doc(labs)))
    agree.main([str(p) for p in paths])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    diff = [r for r in rows if "difference" in r]
    assert len(rows) == 3 and len(diff) == 1 and diff[0]["delta"] == 0.5 and diff[0]["n"] == 2
