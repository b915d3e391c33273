"""safety_evals.judges.features.FeatureStore: each distinct text through the backbone once, kept as
float32 under features/<sha256[:2]>/<sha256>.npy (the layout of caches already on disk), and read back
from there without the backbone."""

import hashlib

import numpy as np
import pytest

from safety_evals.judges.features import LEXICAL_DIM, FeatureStore, Recipe, lexical_features


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


def test_ngrams_are_appended_to_the_backbone_states_that_a_plain_recipe_cached(tmp_path):
    """Recipe(ngram_words=N): [backbone features, lexical_features(texts, N)], the backbone part read
    from the plain recipe's cache; a recipe without n-grams keeps the key it had before the field."""
    plain = Recipe(backbone="stub", layers=(1,), max_tokens=8)
    assert plain.key() == '{"backbone": "stub", "layers": [1], "max_tokens": 8, "version": 1}'
    texts = ["I cannot help with that", "Sure, here it is: kill the process"]
    store = FeatureStore(plain, root=tmp_path)
    store._extractor = lambda ts: np.array([[len(t), 1.0] for t in ts])
    states = store(texts)

    with_ngrams = Recipe(backbone="stub", layers=(1,), max_tokens=8, ngram_words=3)
    assert with_ngrams.key() != plain.key()
    fresh = FeatureStore(with_ngrams, root=tmp_path)
    fresh._extractor = lambda ts: pytest.fail(f"the backbone ran on {ts}")
    x = fresh(texts)
    assert x.shape == (2, 2 + LEXICAL_DIM)
    np.testing.assert_array_equal(x[:, :2], states)
    np.testing.assert_array_equal(x[:, 2:], lexical_features(texts, 3))
    # the first 3 words: 3 unigrams + 2 bigrams, each counted once: log(1 + 1) in 5 (or fewer) slots
    assert np.isclose(x[0, 2:].sum(), 5 * np.log(2)) and np.count_nonzero(x[0, 2:]) <= 5
    assert not np.array_equal(x[0, 2:], x[1, 2:])
