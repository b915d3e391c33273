"""JSON mode's character automaton on hand-written prefixes, and Python's json module as the oracle."""

import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from align.sampling import json_grammar as g
from align.sampling import json_mode as jm

# one token per ASCII character: the automaton on characters, with stop token 128
TABLES = jm.build_tables([chr(i) for i in range(128)] + [""], stop_ids=[128])


@jax.jit
def _run(tables, codes):  # codes [N, W] -> (lex [N], cost [N], ctx [N])
    out = jm.run_chars(tables, jm.JsonState.start(codes.shape[0]), codes)
    return out.lex, jm.cost(tables, out), jm._ctx(out.depth, out.bits)


def _states(texts, tables=TABLES) -> list[tuple[int, int, int]]:
    """(lex, closing cost, ctx) after each text from the start (one padded call: few compilations)."""
    width = 64
    while width < max(len(t) for t in texts):
        width *= 2
    codes = np.full((len(texts), width), -1, np.int32)
    for i, t in enumerate(texts):
        codes[i, : len(t)] = g.text_codes(t)
    return list(zip(*(np.asarray(x).tolist() for x in _run(tables, jnp.asarray(codes)))))


@jax.jit
def _allowed_jit(tables, codes, remaining):  # codes [1, 64]
    return jm.allowed(tables, jm.run_chars(tables, jm.JsonState.start(1), codes), remaining)[0]


def _allowed(prefix: str, remaining: int, tables=TABLES) -> np.ndarray:
    """JSON mode's mask [V] after `prefix` with `remaining` tokens left."""
    codes = np.full((1, 64), -1, np.int32)
    codes[0, : len(prefix)] = g.text_codes(prefix)
    return np.asarray(_allowed_jit(tables, jnp.asarray(codes), remaining)[0])


def _state(text: str) -> tuple[int, int]:
    """(lex, closing cost) after `text` from the start."""
    return _states([text])[0][:2]


VALID = [
    '{"a": [1, 2.5e-3, "x\\u00e9y\\n\\"q\\""], "b": null, "c": {"d": [true, false, []]}}',
    "[]",
    "0",
    "-0.5E+7",
    ' "s\\/" ',
    "{}",
    "[[[[1]]],{},-12]",
    '{"k":"caf\u00e9 \u2603"}',
]


@pytest.mark.parametrize("doc", VALID)
def test_every_prefix_of_a_json_document_is_a_prefix_and_only_the_whole_is_complete(doc):
    json.loads(doc)
    for i, (lex, cost, _) in enumerate(_states([doc[:i] for i in range(len(doc))])):
        assert lex < g.INVALID, doc[:i]
        if cost == 0:  # a whole value already (e.g. the "-0" of "-0.5E+7")
            json.loads(doc[:i])
    assert _state(doc)[1] == 0


@pytest.mark.parametrize(
    "text",
    ["{,", "[1,]", '{"a" 1}', "01", "1.e3", "tru ", '"\\x"', '{"a":1,}', "[1 2]", '"a\tb"', "]",
     '{"a":1]', "nul1", "1 2", "-a", "{'a': 1}", '{"a":1}}', "[}", '"\\u12g"', "+1", ".5", "NaN"],
)  # fmt: skip
def test_invalid_text_is_rejected(text):
    assert _state(text)[0] == g.INVALID


@pytest.mark.parametrize(
    "prefix, cost",
    [("", 1), ("{", 1), ('{"a', 4), ('{"a":', 2), ("[1", 1), ("[1,", 2), ("t", 3), ('"\\u00', 3),
     ('[{"a": [', 3), ("-", 1), ("1e", 1), ("[[[", 3)],
)  # fmt: skip
def test_closing_cost_counts_the_canonical_closing_characters(prefix, cost):
    assert _state(prefix)[1] == cost


def test_each_closer_lowers_the_cost_by_one_and_ends_in_a_whole_value():
    for prefix in ['{"a": [{"b', '[1, {"x": -', '{"k": "\\u0', "[[tr", '{"a":[1.', '{"a"']:
        text = prefix
        _, cost = _state(text)
        while cost:
            lex, _, ctx = _states([text])[0]
            nxt = g.closer(lex) or ("}" if ctx == g.OBJ else "]")
            text += nxt
            assert _state(text)[1] == cost - 1, text
            cost -= 1
        json.loads(text)


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([True, False, None])
    if kind == 1:
        return rng.choice([0, -3, 17, 2.5, -1e-7, 6.02e23])
    if kind in (2, 3):
        return "".join(rng.choice('ab"\\\n/\u00e9 ') for _ in range(rng.randrange(4)))
    if kind in (4, 5):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice("xyz"): _random_value(rng, depth + 1) for _ in range(rng.randrange(3))}


def test_random_documents_and_their_mutations_agree_with_json_loads():
    rng = random.Random(0)
    for _ in range(60):
        doc = json.dumps(_random_value(rng), indent=rng.choice([None, 1]))
        assert _state(doc)[1] == 0
        i = rng.randrange(len(doc))
        mutated = doc[:i] + rng.choice(',:]}"x1 ') + doc[i:]
        try:
            json.loads(mutated)
            parses = True
        except json.JSONDecodeError:
            parses = False
        lex, cost = _state(mutated)
        assert parses == (lex < g.INVALID and cost == 0), mutated


def test_token_table_matches_running_the_token_characters():
    texts = ["", '{"', "}", "ab", '":', " true", "1.5", "\n\n", '"]', "e", "x"]
    tables = jm.build_tables([chr(i) for i in range(128)] + texts, stop_ids=[0])
    V = 128 + len(texts)
    brackets = {128 + i for i, t in enumerate(texts) if set(t) & set("{}[]")}
    assert set(np.asarray(tables.bracket_ids).tolist()) == brackets | {ord(c) for c in "{}[]"}
    token_texts = [chr(v) if v < 128 else texts[v - 128] for v in range(1, V)]
    for prefix in ["", '{"a', '{"a"', "[", "[1", '"x']:
        after = _states([prefix + t for t in token_texts])
        expected = [bool(t) and lex < g.INVALID for t, (lex, _, _) in zip(token_texts, after)]
        assert _allowed(prefix, 100, tables)[1:].tolist() == expected, prefix


def test_stop_tokens_only_when_whole_and_the_budget_forces_closing():
    mask = _allowed('[{"a"', 100)
    assert not mask[128] and mask[ord(":")] and mask[ord(" ")]
    mask = _allowed('[{"a"', 4)  # cost 4 (: 0 } ]) with 4 tokens left: only the closer
    assert np.flatnonzero(mask).tolist() == [ord(":")]
    mask = _allowed("[1]", 1)
    assert np.flatnonzero(mask).tolist() == [ord(c) for c in "\t\n\r "] + [128]


def test_a_vocab_without_a_closing_character_is_refused():
    with pytest.raises(ValueError, match="one-character token"):
        jm.build_tables([chr(i) for i in range(128) if chr(i) != "}"], stop_ids=[0])
