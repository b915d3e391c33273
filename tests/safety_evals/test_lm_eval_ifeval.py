"""IFEval both ways on one tiny random model: lm-eval's evaluator on its own `ifeval` task with the
"align" lm-eval model gives the same responses, per-instruction results and four accuracies as our
ifeval suite (scripts/compare_ifeval_lm_eval.py does this on gemma3-270m), and the lm-eval model's
generate_until is our JaxLM.generate."""

import numpy as np
import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from safety_evals.lm.lm_eval_model import AlignLM  # noqa: E402
from safety_evals.lm.protocol import cut_at_stop  # noqa: E402
from safety_evals.results import DataInfo  # noqa: E402
from safety_evals.suites import ifeval  # noqa: E402
from tests.scripts import load_script  # noqa: E402

L = load_script("scripts/lm_eval_tasks.py")
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def jlm(tmp_path_factory):
    import align
    from safety_evals.lm.jax_lm import JaxLM
    from tests.safety_evals.fakes import tiny_model_dir

    path = tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", seed=3)
    return JaxLM.from_loaded(align.load(str(path)), name="tiny", batch_size=4)


@pytest.fixture(scope="module")
def items():
    kept, _ = L.ifeval_sample(ifeval.DEFAULT_SOURCE, 6)  # 6 rows: a full batch of 4 and a padded one
    return kept


def test_generate_until_is_our_generate(jlm):
    prompts = ["Write a haiku about rain.", "List three colours, in capital letters:", "a b"]
    kwargs = {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": NEW_TOKENS}
    reqs = [Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(prompts)]
    got = AlignLM(lm=jlm).generate_until(reqs)
    assert got == [o[0] for o in jlm.generate(prompts, max_new_tokens=NEW_TOKENS)]
    assert all(got)  # the tiny model writes something: equal empty strings would prove nothing
    # `until` cuts lm-eval's answer as HFLM does (cut_at_stop), from the same generation
    stop = got[0][2:4]
    cut = AlignLM(lm=jlm).generate_until(
        [Instance("generate_until", {}, (prompts[0], kwargs | {"until": [stop]}), 0)]
    )
    assert cut == [cut_at_stop(got[0], (stop,))]
    assert len(cut[0]) < len(got[0])


def test_lm_eval_ifeval_task_equals_our_suite(jlm, items, tmp_path):
    out = L.run_ifeval(AlignLM(lm=jlm), items, tmp_path, NEW_TOKENS)
    samples = sorted(out["samples"]["ifeval"], key=lambda s: s["doc_id"])
    assert [s["arguments"][0][0] for s in samples] == [it.prompt for it in items]  # no template, no prefix
    assert samples[0]["arguments"][0][1]["max_gen_toks"] == NEW_TOKENS
    config = ifeval.IFEvalConfig(max_new_tokens=NEW_TOKENS, without_punkt=True)
    ours = ifeval.score(jlm, items, DataInfo("sample", "", len(items)), config=config)
    assert [s["resps"][0][0] for s in samples] == [e["output"] for e in ours.examples]
    assert [s["inst_level_loose_acc"] for s in samples] == [e["extra"]["loose"] for e in ours.examples]
    res = out["results"]["ifeval"]
    for name in L.IFEVAL_METRICS:
        assert res[f"{name},none"] == pytest.approx(ours.metrics[name].value, abs=1e-12), name
    # by hand from the per-instruction lists: instruction-level = followed / all instructions
    strict = [e["extra"]["strict"] for e in ours.examples]
    assert ours.metrics["inst_level_strict_acc"].value == pytest.approx(
        sum(map(sum, strict)) / sum(map(len, strict))
    )
    assert ours.metrics["prompt_level_strict_acc"].value == pytest.approx(np.mean([all(s) for s in strict]))
