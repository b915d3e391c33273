"""safety_evals: safety and responsible-AI eval suites over a `LanguageModel`, and their results.

Suites (one module each, `run(lm, ...) -> SuiteResult`): `factuality` (TruthfulQA), `attribution`
(AIS on BEGIN), `hedging` (SelfAware), `stereoset`, `crows_pairs`, `bbq`, `toxicity`.
Models: `jax_lm.JaxLM` (align decoder; `packing` lays its scoring requests out as packed rows of
prefix trees), `hf_lm.HFTorchLM` (transformers reference); both are imported from their modules
so that importing this package pulls in neither JAX nor torch.
Results: `results` (the document of docs/results_schema.md), `bootstrap` (95% CIs).
CLI: `align eval` (`safety_evals.cli`).
"""

from safety_evals.lm.protocol import LanguageModel, TokenScores
from safety_evals.results import DataInfo, Metric, SuiteResult

__all__ = ["DataInfo", "LanguageModel", "Metric", "SuiteResult", "TokenScores"]
