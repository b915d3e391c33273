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
