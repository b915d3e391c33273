"""The probe's feature pass on several processes, simulated in one (process index and count patched,
as tests/multihost/test_shares.py does for the other shares): each process reads (tokenizes, for a
lazily tokenized training set) only the pairs of its rows of every batch, the shares are disjoint and
cover every pair, and each process's rows carry the one-process features."""

import numpy as np
import pytest
from flax import nnx

from align.data.lazy import LazySequences
from align.data.preference import pair_columns
from align.model import Decoder, ModelConfig
from align.training import feed
from reward_models import features
from reward_models.features import pair_feature_sets
from reward_models.probe import head_features
from tests.reward_models.test_probe_mesh import _mesh, _pairs, _score_model

B = 4  # pairs per batch


def _simulate(monkeypatch, p: int, P: int) -> None:
    """Process p of P: its rows are the p-th block of every batch (align.training.feed.local_rows);
    the global batch holds them there and padding elsewhere (what other processes hold is not here)."""
    block = lambda rows: slice(p * rows // P, (p + 1) * rows // P)  # noqa: E731

    def to_global(batch, mesh, rows):
        out = {}
        for k, v in batch.items():
            out[k] = np.zeros((rows, *v.shape[1:]), v.dtype)
            out[k][block(rows)] = v
        return out

    monkeypatch.setattr(features, "local_rows", lambda mesh, rows: block(rows))
    monkeypatch.setattr(feed, "to_global", to_global)  # what features.rows_on_mesh joins the rows with


def _lazy(pairs):
    """`pairs` tokenized when first read, recording which were read."""
    read = []

    def encode(i):
        read.append(i)
        return pairs[i]

    lengths = [pair_columns(x) for x in pairs]
    return LazySequences(encode, range(len(pairs)), lengths, size=pair_columns), read


def _pairs_of_two_lengths(n=10):
    """n pairs, the first half 10 tokens wide, the rest 7: the pooled pass reorders them by length."""
    return _pairs(n // 2, T=10) + _pairs(n - n // 2, T=7)


def _check_shares(run, pairs, order, processes, monkeypatch):
    """run(pairs) -> features [n, ...] on each simulated process: each read only its rows' pairs of every
    batch (batches taken over `order`), the shares are disjoint and cover every pair, and together
    their rows are the one-process features."""
    n = len(pairs)
    want = run(pairs)
    got, shares = np.zeros_like(want), []
    for p in range(processes):
        _simulate(monkeypatch, p, processes)
        lazy, read = _lazy(pairs)
        out = run(lazy)
        rows = range(p * B // processes, (p + 1) * B // processes)
        mine = [order[s + k] for s in range(0, n, B) for k in rows if s + k < n]
        assert sorted(read) == sorted(mine)  # only its share was read (tokenized), each pair once
        got[mine] = out[mine]
        shares.append(read)
        monkeypatch.undo()
    assert sorted(i for share in shares for i in share) == list(range(n))  # disjoint and covering
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return shares


BY_WIDTH = [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]  # _pairs_of_two_lengths by width, stably: the 7-token pairs first


@pytest.mark.parametrize("processes", [2, 4])
def test_pooled_feature_shares_join_into_the_one_process_features(processes, monkeypatch):
    model, mesh = Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(0)), _mesh(2, 2)
    pairs = _pairs_of_two_lengths()
    kwargs = dict(pools=("last", "mean"), layers=(1, 2), batch_size=B, bucket=4, mesh=mesh)
    run = lambda pairs: pair_feature_sets(model, pairs, **kwargs)  # noqa: E731
    _check_shares(run, pairs, BY_WIDTH, processes, monkeypatch)


@pytest.mark.parametrize("processes", [2, 4])
def test_probe_feature_shares_join_into_the_one_process_features(processes, monkeypatch):
    model, mesh = _score_model(), _mesh(2, 2)
    pairs = _pairs_of_two_lengths()
    run = lambda pairs: head_features(model, pairs, batch_size=B, bucket=4, mesh=mesh)  # noqa: E731
    shares = _check_shares(run, pairs, BY_WIDTH, processes, monkeypatch)
    if processes == 2:  # batches of 4 pairs: rows 0-1 on process 0, 2-3 on process 1; 10 pairs, 3 batches
        assert shares == [[5, 6, 9, 0, 3, 4], [7, 8, 1, 2]]


def test_one_process_reads_every_pair_once(monkeypatch):
    model = _score_model()
    pairs = _pairs_of_two_lengths()
    lazy, read = _lazy(pairs)
    np.testing.assert_array_equal(
        head_features(model, lazy, batch_size=B, bucket=4, mesh=_mesh(2, 2)),
        head_features(model, pairs, batch_size=B, bucket=4, mesh=_mesh(2, 2)),
    )
    assert read == BY_WIDTH
