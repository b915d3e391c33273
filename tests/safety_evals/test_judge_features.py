"""safety_evals.judges.features.FeatureStore: each distinct text through the backbone once, kept as
float32 under features/<sha256[:2]>/<sha256>.npy (the layout of caches already on disk), and read back
from there without the backbone."""

import hashlib

import numpy as np

from safety_evals.judges.features import FeatureStore, Recipe


def test_each_text_is_extracted_once_and_read_back_from_disk(tmp_path):
    recipe = Recipe(backbone="stub", layers=(1,), max_tokens=8)
    calls = []

    def extract(texts):
        calls.append(list(texts))
        return np.array([[len(t), t.count("a")] for t in texts], np.float64)

    store = FeatureStore(recipe, root=tmp_path, batch_size=2)
    store._extractor = extract
    texts = ["banana", "a", "kiwi", "banana", "apple"]
    first = store(texts)
    assert first.dtype == np.float32 and first.tolist() == [[6, 3], [1, 1], [4, 0], [6, 3], [5, 1]]
    assert calls == [["a", "kiwi"], ["apple", "banana"]]  # distinct texts, shortest first, 2 a batch
    key = hashlib.sha256((recipe.key() + "\x00" + "kiwi").encode()).hexdigest()
    np.testing.assert_array_equal(np.load(tmp_path / "features" / key[:2] / f"{key}.npy"), [4, 0])

    fresh = FeatureStore(recipe, root=tmp_path)
    fresh._extractor = lambda texts: calls.append(texts)  # any extraction would be recorded
    np.testing.assert_array_equal(fresh(texts[::-1]), first[::-1])
    assert len(calls) == 2 and fresh([]).shape == (0, 0)
