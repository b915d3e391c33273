"""The cached feature pass on several processes, simulated by threads in one process (each thread a
process holding its block of every batch's rows, its gathers joined with the other threads'): each
process reads (tokenizes) only its rows of every batch, cold, warm or partly warm, and every process
gets the cache-less pass's features, bit for bit where the cache-less batches are kept."""

import threading

import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.training import feed
from reward_models import features
from reward_models.features import FeatureCache, pair_feature_sets
from tests.reward_models.test_probe_mesh import _mesh
from tests.reward_models.test_probe_shares import BY_WIDTH, _lazy, _pairs_of_two_lengths

B = 4  # pairs per batch
KWARGS = dict(pools=("last", "mean"), layers=(1, 2), batch_size=B, bucket=4)
POOLING = "('last', 'mean')(1, 2)"  # pair_feature_sets' name of KWARGS' pooling in the cache
LOST = [5, 2]  # the entries removed for the partly warm pass: rows of two processes, in two batches


class Processes:
    """`processes` threads run one function as processes p = 0.. would: p holds the p-th block of every
    batch's rows (align.training.feed.local_rows), and to_global joins the blocks of every process
    into the global batch (what a multi-process jax.Array holds, read whole by host_array)."""

    def __init__(self, monkeypatch, processes: int):
        self.count, self.mine = processes, threading.local()
        self.gate, self.blocks = threading.Barrier(processes, timeout=120), [None] * processes
        monkeypatch.setattr(features, "local_rows", lambda mesh, rows: self.block(self.mine.p, rows))
        monkeypatch.setattr(feed, "to_global", self.to_global)  # what features.rows_on_mesh joins with

    def block(self, p: int, rows: int) -> slice:
        return slice(p * rows // self.count, (p + 1) * rows // self.count)

    def to_global(self, batch, mesh, rows):
        self.blocks[self.mine.p] = batch
        self.gate.wait()  # every process's block is in
        joined = {k: np.concatenate([b[k] for b in self.blocks]) for k in batch}
        self.gate.wait()  # every process has joined them before the next gather replaces them
        assert all(len(v) == rows for v in joined.values())
        return joined

    def run(self, fn) -> list:
        """[fn(p) for every process p], each in its own thread."""
        results, errors = [None] * self.count, []

        def main(p):
            self.mine.p = p
            try:
                results[p] = fn(p)
            except BaseException as e:  # the others would wait for it at the next gather
                errors.append(e)
                self.gate.abort()

        threads = [threading.Thread(target=main, args=(p,)) for p in range(self.count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


def rows_of(p: int, processes: int, order) -> list[int]:
    """The pairs at process p's rows of every batch of `order`."""
    rows = range(p * B // processes, (p + 1) * B // processes)
    return [order[s + k] for s in range(0, len(order), B) for k in rows if s + k < len(order)]


def cached_pass(sim, pairs, model, mesh, root):
    """Every process's (features, the pairs it read, its progress reports) of one cached pass, each
    with its own lazily tokenized copy of `pairs` and its own FeatureCache on `root`."""

    def one(p):
        lazy, read = _lazy(pairs)
        seen = []
        cache = FeatureCache(root, key="tiny")
        out = pair_feature_sets(model, lazy, **KWARGS, cache=cache, mesh=mesh, progress=seen.append)
        return out, read, seen

    return sim.run(one)


@pytest.mark.parametrize("processes", [2, 4])
def test_cached_pass_reads_only_each_process_rows_cold_warm_and_partly_warm(processes, monkeypatch, tmp_path):
    model, mesh = Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(0)), _mesh(2, 2)
    pairs = _pairs_of_two_lengths()  # 10 pairs: batches [5 6 7 8] [9 0 1 2] [3 4] (BY_WIDTH)
    n = len(pairs)
    want = pair_feature_sets(model, pairs, **KWARGS, mesh=mesh)  # one process, no cache
    sim = Processes(monkeypatch, processes)
    mine = [sorted(rows_of(p, processes, BY_WIDTH)) for p in range(processes)]
    assert sorted(i for m in mine for i in m) == list(range(n))  # disjoint and covering

    for run in ("cold", "warm"):
        results = cached_pass(sim, pairs, model, mesh, tmp_path)
        for p, (out, read, seen) in enumerate(results):
            np.testing.assert_array_equal(out, want)  # bit for bit: the cache-less batches, or their entries
            assert len(read) == len(set(read)) and sorted(read) == mine[p], run  # its rows, each once
            assert seen == ([B, B, 2] if run == "cold" else [n]), run  # warm: every pair from the cache
        assert len(list(tmp_path.glob("*.npy"))) == n

    # partly warm: pairs 5 and 2 lost their entries
    cache, lost = FeatureCache(tmp_path, key="tiny"), LOST
    for i in lost:
        cache.path(pairs[i], POOLING).unlink()
    results = cached_pass(sim, pairs, model, mesh, tmp_path)
    # they make one batch [5 2] of their own: a process reads its rows of it besides its rows of the
    # cache-less batches, here pair 2 on a process that did not look it up
    again = [rows_of(p, processes, lost) for p in range(processes)]
    assert any(set(a) - set(m) for a, m in zip(again, mine))
    for p, (out, read, seen) in enumerate(results):
        assert sorted(set(read)) == sorted(set(mine[p]) | set(again[p])) and len(read) == len(set(read))
        assert seen == [n - 2, 2]
        np.testing.assert_array_equal(np.delete(out, lost, 0), np.delete(want, lost, 0))  # read back
        np.testing.assert_allclose(out[lost], want[lost], rtol=1e-5, atol=1e-5)  # another padding
        np.testing.assert_array_equal(out, results[0][0])  # every process has the same features
    for i in lost:  # written again, by the process holding it
        np.testing.assert_array_equal(cache.get(pairs[i], POOLING), results[0][0][i])
    assert len(list(tmp_path.glob("*.npy"))) == n
