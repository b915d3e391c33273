"""`align pipeline` evaluates before and after, compares, and ends in the release gate (exit code 1 on FAIL).

Training stages are replaced by tiny random Gemma3 exports (seed per stage: three different models), so
the test runs the real eval stage, comparison, gate and export on CPU in about a minute.
"""

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from safety_evals.review import gate
from safety_evals.review.documents import load_results
from safety_evals.review.policy import load_policy
from tests.paths import CONFIGS, VARIANTS
from tests.safety_evals.fakes import tiny_model_dir

CONFIG = str(CONFIGS / "quickstart_tiny.yaml")
POLICY = """schema: align.gate_policy/v1
suites: [crows_pairs]
metrics:
  crows_pairs.likelihood_difference: {{max: {limit}, regression: 1000}}
"""


def _fake_training(monkeypatch):
    """Each training stage writes a tiny export and its summary.json, as the real ones do."""
    import pipelines.stages.rlhf as rlhf
    import pipelines.stages.sft as sft
    import reward_models.train as rm

    def stage(seed):
        def run(config):
            out = tiny_model_dir(Path(config.output_dir) / "export", seed=seed)
            (out.parent / "summary.json").write_text(json.dumps({"step": 1}))

        return run

    monkeypatch.setattr(sft, "run_sft", stage(1))
    monkeypatch.setattr(rm, "run_rm_training", stage(2))
    monkeypatch.setattr(rlhf, "run_rlhf", stage(3))


CARDS: dict[str, dict] = {}


def _card_spy(monkeypatch):
    """render_card as it will take the comparison and the verdicts (keywords that pipelines pass only to
    a render_card that has them), recording what each variant's card was given."""
    import pipelines.release.variants as variants

    real = variants.render_card

    def render_card(*, comparison=None, verdicts=None, **kwargs):
        CARDS[kwargs["variant"]] = {"comparison": comparison, "verdicts": verdicts}
        return real(**kwargs)

    monkeypatch.setattr(variants, "render_card", render_card)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    mp = pytest.MonkeyPatch()
    _fake_training(mp)
    _card_spy(mp)
    policy = out / "lenient.yaml"
    policy.write_text(POLICY.format(limit=1.0e6))
    args = ["pipeline", CONFIG, f"output_dir={out}", VARIANTS, "eval.suites=crows_pairs", "eval.limit=4"]
    code = main([*args, f"gate.policy={policy}"])
    yield out, args, code
    mp.undo()


def test_base_sft_and_each_variant_are_compared_from_their_results(run):
    out, _, code = run
    assert code == 0
    for variant in ("chat", "developer"):
        doc = json.loads((out / "compare" / variant / "comparison.json").read_text())
        assert doc["schema"] == "align.comparison/v1" and doc["models"] == ["base", "sft", variant]
        files = {"base": f"base.{variant}", "sft": f"sft.{variant}", variant: variant}
        readings = {k: load_results(out / "evals" / f"{f}.json").metrics() for k, f in files.items()}
        for row in doc["rows"]:
            name = f"{row['suite']}.{row['metric']}"
            for label, r in readings.items():
                assert row["values"][label]["value"] == r[name].value
            change = row["change"][variant]
            assert change["method"] == "paired_bootstrap" and change["n_paired"] == r[name].n
            assert change["mean"] == pytest.approx(r[name].value - readings["base"][name].value)
        # three different models: the after differs from the before
        assert any(row["change"][variant]["mean"] != 0 for row in doc["rows"])
    # the variants prompt differently (chat has a system prompt): no single base, so the overall
    # Markdown holds one table per variant
    assert "## chat" in (out / "compare" / "comparison.md").read_text()
    base_chat = load_results(out / "evals" / "base.chat.json")
    assert base_chat.config["system_prompt"] and base_chat.model.name == "preset:tiny"


def test_the_verdict_is_the_gate_of_the_results_against_the_base(run):
    out, _, _ = run
    for variant in ("chat", "developer"):
        verdict = json.loads((out / "gate" / variant / "verdict.json").read_text())
        results = load_results(out / "evals" / f"{variant}.json")
        baseline = load_results(out / "evals" / f"base.{variant}.json")
        checks = gate.evaluate(results, load_policy(out / "lenient.yaml"), baseline)
        assert verdict["passed"] and verdict["failed"] == 0 and verdict["variant"] == variant
        assert [c["message"] for c in verdict["checks"]] == [c.message for c in checks]
        assert "vs baseline" in verdict["checks"][-1]["message"]  # the regression rule saw the base
        assert 'failures="0"' in (out / "gate" / variant / "junit.xml").read_text()
        assert "Release gate: ✅ PASS" in (out / "gate" / variant / "summary.md").read_text()
        assert (out / "variants" / variant / "README.md").exists()
        card = CARDS[variant]  # each card is given its own comparison and verdict
        assert card["comparison"]["models"] == ["base", "sft", variant]
        assert card["verdicts"] == {variant: verdict}


def test_a_threshold_above_what_the_run_reached_fails_the_pipeline(run, tmp_path):
    out, args, _ = run
    reached = load_results(out / "evals" / "chat.json").metrics()["crows_pairs.likelihood_difference"].value
    strict = tmp_path / "strict.yaml"
    strict.write_text(POLICY.format(limit=reached / 2))
    # the chat variant gets the strict policy, the developer keeps the lenient one; evals are not rerun
    code = main([*args, f"gate.policy={out / 'lenient.yaml'}", f"gate.per_variant={{chat: {strict}}}"])
    assert code == 1
    chat = json.loads((out / "gate" / "chat" / "verdict.json").read_text())
    developer = json.loads((out / "gate" / "developer" / "verdict.json").read_text())
    assert (chat["passed"], chat["failed"], developer["passed"]) == (False, 1, True)
    failed = next(c for c in chat["checks"] if c["status"] == "fail")
    assert (
        failed["name"] == "crows_pairs.likelihood_difference max" and f"{reached:.4g} >" in failed["message"]
    )
    assert json.loads((out / "pipeline.json").read_text())["eval:chat"]["status"] == "skipped"


def test_a_gate_naming_an_unknown_variant_or_policy_is_bad_input_before_training(tmp_path, capsys):
    args = ["pipeline", CONFIG, f"output_dir={tmp_path}", VARIANTS]
    assert main([*args, "gate.per_variant={chatt: configs/gates/release.yaml}"]) == 2
    assert "gate.per_variant: unknown variants ['chatt']" in capsys.readouterr().err
    assert main([*args, f"gate.policy={tmp_path / 'none.yaml'}"]) == 2
    assert "none.yaml (variant chat) does not exist" in capsys.readouterr().err
    assert not (tmp_path / "sft").exists()


@pytest.mark.parametrize("seed, given", [(0, False), (7, True)])
def test_the_base_is_evaluated_as_sft_starts_from_it(tmp_path, monkeypatch, seed, given):
    """A preset's seed is not in its spec: the eval then gets the model the SFT stage loads."""
    import numpy as np

    from align.config_io import load_config
    from align.hub import ModelOptions, load_model
    from pipelines.pipeline import Pipeline, QuickstartConfig
    from pipelines.stages import evaluate
    from safety_evals import api

    seen = []
    monkeypatch.setattr(api, "run_eval", lambda options, **kw: seen.append(kw) or 1 / 0)
    overrides = [f"output_dir={tmp_path}", VARIANTS, f"model.seed={seed}"]
    pipeline = Pipeline(load_config(QuickstartConfig, CONFIG, overrides), CONFIG)
    base = evaluate.targets(pipeline)[0]
    assert base.label == "base" and base.model == "preset:tiny"
    with pytest.raises(ZeroDivisionError):
        evaluate.run_eval(pipeline, base)
    assert ("lm" in seen[0]) == given
    if given:
        expected, _ = load_model(ModelOptions(spec="preset:tiny", seed=seed))
        got = seen[0]["lm"].model.embedder.table.value
        assert np.array_equal(np.asarray(got), np.asarray(expected.embedder.table.value))
