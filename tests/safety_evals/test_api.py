"""safety_evals.api: `run_eval(EvalOptions) -> results document` on a real tiny decoder, option checks,
and the one table of suites."""

import pytest

import align
from align.errors import InvalidInput, MissingInput
from safety_evals import api, results
from safety_evals.lm.jax_lm import JaxLM
from safety_evals.suites import crows_pairs
from tests.safety_evals.fakes import FakeLM, tiny_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(autouse=True)
def fake_trained_judges(monkeypatch):
    """The shipped judges' stand-ins (word rules): these tests check the wiring, not the judges."""
    from tests.safety_evals import rule_judges

    fakes = {"hedge": rule_judges.hedge_judge(), "refusal": rule_judges.refusal_judge()}
    monkeypatch.setattr(api, "trained_judge", fakes.__getitem__)


def _values(entry: dict) -> dict:
    return {name: m["value"] for name, m in entry["metrics"].items()}


def test_run_eval_on_a_tiny_decoder_returns_the_document(model_dir):
    options = api.EvalOptions(
        model=str(model_dir),
        suites=("crows_pairs", "hedging"),
        limit=2,
        variant="chat",  # generation prompts go through the gemma chat turn, with a system prompt
        system_prompt="Be brief.",
        step=5,
        progress=False,
    )
    doc = api.run_eval(options)
    assert {n: s["status"] for n, s in doc["suites"].items()} == {"crows_pairs": "ok", "hedging": "ok"}
    assert doc["model"] == {
        "name": str(model_dir),
        "path": str(model_dir),
        "sha256": results.files_sha256(model_dir),
        "variant": "chat",
        "step": 5,
    }
    assert doc["config"] == api.config_record(options)
    assert doc["config"]["chat_template"] == "gemma" and doc["config"]["suites"] == ["crows_pairs", "hedging"]
    assert doc["suites"]["crows_pairs"]["data"]["n"] == 2
    assert doc["suites"]["hedging"]["data"]["n"] == 4  # `limit` answerable + `limit` unanswerable
    # The same numbers as the suite run by hand on the same weights: run_eval only wires.
    by_hand = crows_pairs.run(JaxLM.from_loaded(align.load(str(model_dir)), name="m"), limit=2)
    assert _values(doc["suites"]["crows_pairs"]) == {n: m.value for n, m in by_hand.metrics.items()}


def test_the_hf_backend_scores_the_same_directory_like_the_jax_one(model_dir):
    pytest.importorskip("torch")
    docs = [
        api.run_eval(
            api.EvalOptions(model=str(model_dir), suites=("crows_pairs",), limit=2, backend=b, progress=False)
        )
        for b in ("jax", "hf")
    ]
    jax_values, hf_values = (_values(d["suites"]["crows_pairs"]) for d in docs)
    assert docs[1]["model"]["path"] == str(model_dir)
    assert hf_values == pytest.approx(jax_values, abs=1e-4)  # float32 log-probs of two implementations


def test_a_model_that_cannot_be_loaded_raises_missing_input(tmp_path):
    with pytest.raises(MissingInput, match="is not a file, a directory or a known name"):
        api.run_eval(api.EvalOptions(model=str(tmp_path / "none"), suites=("hedging",)))


def test_an_already_loaded_lm_is_evaluated_as_given():
    lm = FakeLM(default="I don't know.")
    doc = api.run_eval(api.EvalOptions(model="fake", suites=("hedging",), limit=1, progress=False), lm=lm)
    assert doc["model"]["path"] is None and doc["suites"]["hedging"]["status"] == "ok"
    assert lm.gen_calls[0]["prompts"][0].startswith("Q: ")  # no variant: raw prompts


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"suites": ()}, r"suites: unknown \(none given\)"),
        ({"suites": ("hedging", "hedging")}, "names a suite twice"),
        ({"chat_template": "chatml"}, "chat_template: 'chatml' is not one of gemma, none"),
        ({"variant": "developer", "system_prompt": "x"}, "system_prompt needs a chat template"),
        ({"backend": "tf"}, "backend: 'tf'"),
        ({"batch_size": 0}, "batch_size: 0 is below 1"),
        ({"judge": "seq2seq:"}, "judge: 'seq2seq:' is not"),
    ],
)
def test_invalid_options_cannot_be_built(fields, says):
    with pytest.raises(InvalidInput, match=says):
        api.EvalOptions(model="m", **fields)


def test_the_chat_template_follows_the_variant_unless_named():
    assert api.EvalOptions(model="m", variant="chat").chat_template == "gemma"
    assert api.EvalOptions(model="m", variant="developer").chat_template == "none"
    assert api.EvalOptions(model="m", variant="chat", chat_template="none").chat_template == "none"
    assert api.EvalOptions(model="m", suites=["bbq"]).suites == ("bbq",)


def test_adding_a_suite_is_one_entry_in_the_table(monkeypatch):
    data = results.DataInfo("d.jsonl", "ab" * 32, 1)
    echo = api.Suite(
        "7",
        lambda lm, o: results.SuiteResult(data, {"n": results.mean_metric([o.limit], higher_is_better=None)}),
    )
    monkeypatch.setitem(api.SUITES, "echo", echo)
    doc = api.run_eval(api.EvalOptions(model="fake", suites=("echo",), limit=3, progress=False), lm=FakeLM())
    entry = doc["suites"]["echo"]
    assert (entry["version"], entry["metrics"]["n"]["value"]) == ("7", 3.0)


def test_every_suite_module_is_in_the_table_with_its_version():
    from safety_evals.suites import (
        attribution,
        bbq,
        factuality,
        hedging,
        ifeval,
        refusal,
        stereoset,
        toxicity,
    )

    modules = (attribution, bbq, crows_pairs, factuality, hedging, ifeval, refusal, stereoset, toxicity)
    assert {m.__name__.rsplit(".", 1)[1]: m.VERSION for m in modules}.items() <= {
        n: s.version for n, s in api.SUITES.items()
    }.items()
    assert set(api.DEFAULT_SUITES) <= set(api.SUITES)
