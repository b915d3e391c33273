"""The probe's cached feature pass on 2 real processes (jax.distributed on localhost, 2 CPU devices
each, data=2 x fsdp=2): each process tokenizes only its rows of every batch, cold, warm and partly
warm, and every pass gives every process the cache-less features (bit for bit where the cache-less
batches are kept). tests/reward_models/test_probe_cache_shares.py checks the same with threads."""

from __future__ import annotations

import numpy as np

from tests.multihost.harness import check, launch
from tests.reward_models.test_probe_cache_shares import LOST
from tests.reward_models.test_probe_shares import BY_WIDTH

B = 4  # pairs per batch (test_probe_cache_shares.KWARGS)


def test_each_process_tokenizes_only_its_rows_through_the_cache(tmp_path):
    (tmp_path / "cache").mkdir()
    argv = ["-m", "tests.multihost.probe_cache_worker", str(tmp_path), str(tmp_path / "cache")]
    check(launch(argv, processes=2, devices=2, timeout=300), "the cached probe pass on 2 processes")
    runs = [dict(np.load(tmp_path / f"process-{p}.npz")) for p in range(2)]
    assert [tuple(r["rows"]) for r in runs] == [(0, 2), (2, 4)]  # the data axis spans the processes
    mine = [{5, 6, 9, 0, 3, 4}, {7, 8, 1, 2}]  # rows 0-1 and 2-3 of the batches of BY_WIDTH
    assert BY_WIDTH == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    want = runs[0]["plain"]
    for p, run in enumerate(runs):
        for name in ("plain", "cold", "warm", "partly_warm"):
            read = run[f"{name}_read"].tolist()
            extra = {2} if (name, p) == ("partly_warm", 0) else set()  # its row of the batch [5 2]
            assert len(read) == len(set(read)) and set(read) == mine[p] | extra, (p, name)
        for name in ("plain", "cold", "warm"):
            np.testing.assert_array_equal(run[name], want)
        kept = np.delete(np.arange(10), LOST)
        np.testing.assert_array_equal(run["partly_warm"][kept], want[kept])
        np.testing.assert_allclose(run["partly_warm"], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(run["partly_warm"], runs[0]["partly_warm"])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 10
