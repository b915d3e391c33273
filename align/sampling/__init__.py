"""KV-cache sampling: one jitted prefill + decode loop, pluggable next-token methods."""

from align.sampling.methods import SamplingConfig, sample_next, scaled_logprobs
from align.sampling.sampler import SampleResult, compiled_count, generate

__all__ = ["SampleResult", "SamplingConfig", "compiled_count", "generate", "sample_next", "scaled_logprobs"]
