"""JaxLM with a mesh: weights sharded by align's rules table, batch rows over the data axes, its jitted
passes traced under the mesh (the decoder's activation constraints in the program), and the same
log-likelihoods, greedy flags and greedy generations as the one-device adapter."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import align
from align.model.sharding import MeshConfig, make_mesh
from safety_evals.lm import jax_lm
from safety_evals.lm.jax_lm import JaxLM

REQUESTS = [
    ("", "The cat sat on the mat."),
    ("Hello world,", " the quick brown fox"),
    ("Hello world,", " a slow dog"),  # shares a prefix with the request above: a prefix tree
    ("The dog ", "ran in the park."),
    ("", "yes"),
    ("Is the response supported?", " no"),
]
PROMPTS = ["The cat", "Hello world, the quick", "Is the", "A"]


@pytest.fixture(scope="module")
def loaded():
    return align.load("preset:tiny")


@pytest.fixture(scope="module")
def one(loaded):
    return JaxLM.from_loaded(loaded, name="one", batch_size=4, max_length=128)


@pytest.fixture(scope="module", params=[(2, 2), (1, 4)], ids=["data2xfsdp2", "fsdp4"])
def adapters(request, loaded, one):
    data, fsdp = request.param
    mesh = make_mesh(MeshConfig(data=data, fsdp=fsdp), jax.devices()[:4])
    return one, JaxLM.from_loaded(loaded, name="mesh", batch_size=4, max_length=128, mesh=mesh)


def _lowered_score(lm, scorer) -> str:
    """StableHLO text of one scoring pass of `lm`'s weights and rows [4, 32] through `scorer`."""
    rows = lm._rows(*[np.ones((4, 32), np.int32)] * 4)
    entries = np.zeros(128, np.int32)
    args = (lm._graphdef, lm._state, *rows, entries, entries, np.int32(8))
    return scorer.lower(*args, tree=False).as_text()


def test_the_scoring_pass_traces_the_decoders_constraints_on_the_mesh_only(adapters):
    one, sharded = adapters
    text = _lowered_score(sharded, jax_lm.scorer(sharded.mesh))
    # the residual stream [R, T, D] after the embedder, each block and the final norm
    n = sharded.model.config.num_layers + 2
    assert text.count("sdy.sharding_constraint") == n and '[{"data", "fsdp"}, {}, {}]' in text
    assert "sharding_constraint" not in _lowered_score(one, jax_lm.scorer(None))
    # the same sharded inputs through the mesh-less jit: the constraints are no-ops (the old program)
    assert "sharding_constraint" not in _lowered_score(sharded, jax_lm.scorer(None))


def test_the_adapter_shards_a_copy_of_the_weights(adapters):
    one, sharded = adapters
    q = sharded.model.layers[0].attn.q[...]
    assert q.sharding.spec == P("fsdp", "tensor", None) and len(q.sharding.device_set) == 4
    assert len(one.model.layers[0].attn.q[...].sharding.device_set) == 1  # the loaded model is untouched


def test_sharded_loglikelihoods_equal_one_device(adapters):
    one, sharded = adapters
    want, got = one.loglikelihood(REQUESTS), sharded.loglikelihood(REQUESTS)
    for w, g in zip(want, got, strict=True):
        assert g.n_tokens == w.n_tokens and g.is_greedy == w.is_greedy
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-5)  # measured: max 1.9e-6 (|log p| <= 9)
    before = jax_lm.scorer(sharded.mesh)._cache_size()
    sharded.loglikelihood(REQUESTS)
    assert jax_lm.scorer(sharded.mesh)._cache_size() == before  # the sharded passes compile once per shape


def test_sharded_generations_equal_one_device(adapters, monkeypatch):
    import align.sampling

    one, sharded = adapters
    seen, generate = [], align.sampling.generate

    def spy(*args, **kwargs):  # the mesh in context when the adapter calls the jitted sampler
        seen.append(jax.sharding.get_abstract_mesh())
        return generate(*args, **kwargs)

    monkeypatch.setattr(align.sampling, "generate", spy)
    # one [4, P] batch each: greedy on 3 prompts (a filler row), sampled with one key per row
    assert sharded.generate(PROMPTS[:3], max_new_tokens=6) == one.generate(PROMPTS[:3], max_new_tokens=6)
    assert seen[0] == sharded.mesh.abstract_mesh and seen[1].empty
    kwargs = dict(max_new_tokens=6, temperature=1.0, num_samples=2, seed=3)
    assert sharded.generate(PROMPTS[:2], **kwargs) == one.generate(PROMPTS[:2], **kwargs)


def test_eval_options_mesh_reaches_the_adapter():
    from align.errors import InvalidInput
    from safety_evals import api
    from safety_evals.cli import _mesh

    assert _mesh("2,-1,2") == (2, -1, 2) and _mesh(None) is None
    with pytest.raises(InvalidInput, match="--mesh '2x2': expected DATA,FSDP,TENSOR"):
        _mesh("2x2")
    lm, _ = api.load_lm(api.EvalOptions(model="preset:tiny", mesh=(2, -1, 2)))  # the 8 test devices
    q = lm.model.layers[0].attn.q[...]
    assert q.sharding.spec == P("fsdp", "tensor", None) and len(q.sharding.device_set) == 8
    assert dict(lm.mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
