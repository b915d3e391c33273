"""The last step of the shared multi-process launch (tests/multihost/cases.py, read by
test_multihost.py): the probe's feature pass over 10 lazily tokenized tiny pairs on a data=2 x fsdp=2
mesh, without a cache, then through one cache folder cold, warm and partly warm (process 0 removes 2
entries between the passes).

    python -m tests.multihost.worker ... :: -m tests.multihost.probe_cache_worker OUT_DIR CACHE_DIR
    python -m tests.multihost.probe_cache_worker OUT_DIR CACHE_DIR         (alone)

Writes OUT_DIR/process-<i>.npz: each pass's features and the pairs this process tokenized, in order,
and its rows of a batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import align
from align import distributed


def main(out_dir: str, cache_dir: str) -> None:
    align.setup()
    distributed.initialize()
    from flax import nnx

    from align.model import Decoder, ModelConfig
    from align.model.sharding import MeshConfig, make_mesh
    from reward_models.features import FeatureCache, pair_feature_sets, process_rows
    from tests.reward_models.test_probe_cache_shares import KWARGS, LOST, POOLING
    from tests.reward_models.test_probe_shares import _lazy, _pairs_of_two_lengths

    model, mesh = (
        Decoder(ModelConfig.tiny(vocab_size=64), rngs=nnx.Rngs(0)),
        make_mesh(MeshConfig(data=2, fsdp=2)),
    )
    pairs, result = _pairs_of_two_lengths(), {}
    take = process_rows(mesh, KWARGS["batch_size"])
    result["rows"] = np.array([take.start, take.stop])
    for name in ("plain", "cold", "warm", "partly_warm"):
        if name == "partly_warm":
            if distributed.is_primary():
                for i in LOST:
                    FeatureCache(cache_dir, key="tiny").path(pairs[i], POOLING).unlink()
            distributed.barrier("entries-removed")
        lazy, read = _lazy(pairs)
        cache = None if name == "plain" else FeatureCache(cache_dir, key="tiny")
        result[name] = pair_feature_sets(model, lazy, **KWARGS, cache=cache, mesh=mesh)
        result[f"{name}_read"] = np.array(read, np.int64)
        distributed.barrier(f"{name}-done")  # every entry written before the next pass looks
    np.savez(Path(out_dir) / f"process-{distributed.process_index()}.npz", **result)


if __name__ == "__main__":
    main(*sys.argv[1:])
