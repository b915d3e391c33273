"""The align model as an lm-eval model ("align"): its three request types against lm-eval's own HFLM on
the same tiny random checkpoint (the reference implementation), and `align lm-eval run` end to end on
a local multiple-choice task, its accuracy recomputed by hand from the model's log-likelihoods."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402

from pipelines import cli  # noqa: E402
from safety_evals.lm.lm_eval_model import AlignLM  # noqa: E402
from tests.safety_evals.fakes import tiny_model_dir  # noqa: E402

TEXTS = ["The cat sat on the mat.", "Paris is the capital of France, and it is large.", "a b c"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", seed=3)


@pytest.fixture(scope="module")
def models(tiny):
    from lm_eval.models.huggingface import HFLM

    ours = get_model("align")(model=str(tiny), batch_size=4, max_length=24)  # short: rolling takes 3+ windows
    # batch_size 1: the reference on its plainest path (no padding within a batch)
    ref = HFLM(pretrained=str(tiny), dtype="float32", batch_size=1, max_length=24, device="cpu")
    return ours, ref


def requests(kind, args):
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def test_registered_under_align():
    assert get_model("align") is AlignLM


def test_loglikelihood_matches_hflm(models):
    ours, ref = models
    reqs = requests(
        "loglikelihood", [("", TEXTS[0]), ("The dog", " sat on the mat."), ("Paris is", " the capital")]
    )
    got, want = ours.loglikelihood(reqs), ref.loglikelihood(reqs)
    np.testing.assert_allclose([g[0] for g in got], [w[0] for w in want], atol=2e-4)
    assert [g[1] for g in got] == [w[1] for w in want]


def test_loglikelihood_rolling_matches_hflm_over_several_windows(models):
    ours, ref = models
    assert len(ours.rolling_windows(TEXTS[1] * 3)) >= 3  # the windowing itself is exercised
    reqs = requests("loglikelihood_rolling", [(t,) for t in [TEXTS[1] * 3, *TEXTS]])
    np.testing.assert_allclose(ours.loglikelihood_rolling(reqs), ref.loglikelihood_rolling(reqs), atol=5e-4)


def test_generate_until_matches_hflm_greedy(models):
    ours, ref = models
    kwargs = {"until": ["\n\n"], "max_gen_toks": 6, "do_sample": False}
    reqs = requests("generate_until", [(t, dict(kwargs)) for t in TEXTS[:2]])
    got = ours.generate_until(reqs)
    assert got == ref.generate_until(requests("generate_until", [(t, dict(kwargs)) for t in TEXTS[:2]]))
    assert all(isinstance(g, str) and g for g in got)


def tiny_mc_task(tmp_path) -> list[dict]:
    """A local multiple-choice task "tiny_mc" under tmp_path/tasks (no hub); returns its documents."""
    docs = [{"q": f"Q{i}:", "choices": [" yes", " no", " maybe"], "label": i % 3} for i in range(6)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "tiny_mc.yaml").write_text(f"""task: tiny_mc
dataset_path: json
dataset_kwargs: {{data_files: {{test: {tmp_path / "docs.jsonl"}}}}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{q}}}}"
doc_to_choice: choices
target_delimiter: ""
doc_to_target: label
metric_list: [{{metric: acc}}]
""")
    return docs


def test_align_lm_eval_run_writes_lm_eval_results(tiny, tmp_path, models):
    docs = tiny_mc_task(tmp_path)
    argv = ["lm-eval", "run", "--model", "align", "--model_args", f"model={tiny},max_length=24"]
    argv += ["--tasks", "tiny_mc", "--include_path", str(tmp_path / "tasks")]
    argv += ["--output_path", str(tmp_path / "out"), "--batch_size", "4"]
    assert cli.main(argv) == 0
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    acc = json.loads(results_file.read_text())["results"]["tiny_mc"]["acc,none"]
    ours, _ = models
    ll = [s.total for d in docs for s in ours.lm.loglikelihood([(d["q"], c) for c in d["choices"]])]
    picked = np.asarray(ll).reshape(6, 3).argmax(axis=1)
    assert acc == pytest.approx(np.mean(picked == [d["label"] for d in docs]))


def test_the_bare_lm_eval_command_cannot_load_align(tiny, tmp_path):
    """Why the README sends users to `align lm-eval run`: lm-eval 0.4.13's own console script resolves
    --model only from its MODEL_MAPPING and classes registered in its process (it reads no plugin
    entry points), so the same arguments fail there. Should a later lm-eval load plugins, this fails
    and an entry point can replace the wrapper."""
    tiny_mc_task(tmp_path)
    script = Path(sys.executable).with_name("lm_eval")
    if not script.exists():
        pytest.skip(f"no lm_eval console script beside {sys.executable}")
    argv = [str(script), "run", "--model", "align", "--model_args", f"model={tiny}", "--tasks", "tiny_mc"]
    argv += ["--include_path", str(tmp_path / "tasks"), "--output_path", str(tmp_path / "out")]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0
    assert "Attempted to load model 'align', but no model for this name found" in run.stderr
