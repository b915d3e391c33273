"""Language models the suites score or sample: the `LanguageModel` protocol (`protocol`), the JAX
adapter (`jax_lm`, with `packing` of scoring requests), the transformers reference (`hf_lm`) and
wrappers (`wrappers`: chat prompts, progress). Import from the modules: this package pulls in neither
JAX nor torch."""
