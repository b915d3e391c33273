"""safety_evals: safety and responsible-AI eval suites over a `LanguageModel`, and their results.

    from safety_evals import EvalOptions, run_eval
    doc = run_eval(EvalOptions(model="gemma3-270m", suites=("crows_pairs",), limit=200))

Wings, imported one way (tests/test_layering.py, [tool.importlinter] in pyproject.toml):
- `api` (`run_eval`, `EvalOptions`, the table of suites) and `cli` (`align eval`) on top;
- `suites/`: one module per suite (`run(lm, ...) -> SuiteResult`), judges, data loading;
- `lm/`: the `LanguageModel` protocol, `jax_lm.JaxLM` (align decoder), `hf_lm.HFTorchLM` (transformers
  reference), wrappers; with `results` (the document of docs/results_schema.md), `bootstrap`
  (95% CIs) and `metrics` (the metric formulas suites and review both call; numpy only) at the bottom;
- `review/`: gate, dashboard, history; reads results documents only, never suites/, lm/ or JAX.
Importing this package pulls in neither JAX nor torch nor the suites: `run_eval` and `EvalOptions` are
imported from `api` on first use.
"""

from safety_evals.lm.protocol import LanguageModel, TokenScores
from safety_evals.results import DataInfo, Metric, SuiteResult

__all__ = ["DataInfo", "EvalOptions", "LanguageModel", "Metric", "SuiteResult", "TokenScores", "run_eval"]


def __getattr__(name: str):
    # Lazily, so that review/ (which imports this package first) never loads the suites.
    if name in ("EvalOptions", "run_eval"):
        from safety_evals import api

        return getattr(api, name)
    raise AttributeError(f"module 'safety_evals' has no attribute {name!r}")
