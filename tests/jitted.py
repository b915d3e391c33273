"""One jitted Decoder forward for tests that compare whole forwards. Run op by op, every primitive of
the forward compiles on its own for each new shape, seconds a call; tests/model/test_decoder_checks.py
checks the op-by-op forward and gradient against jit once."""

from functools import partial

from flax import nnx


@partial(nnx.jit, static_argnames=("return_logits",))
def forward(model, *args, **kwargs):
    """`model(*args, **kwargs)` under jit: the Decoder's output (logits, hidden, cache)."""
    return model(*args, **kwargs)
