"""JSON mode: decode so that the text is always a JSON prefix and ends as a whole JSON value.

Built once per tokenizer (`json_tables`), used on device at every decode step (`allowed`, `advance`):

- Most tokens never touch the stack (no bracket character): for them a table `next_lex[mode, V]`
  (mode = lex * N_CTX + ctx) gives the lexer position after the token, or INVALID. It is made by
  running the character automaton (json_grammar) over every token's text from every mode, in numpy.
- The few tokens with a bracket (`{`, `}`, `[`, `]`: 1606 of Gemma 3's 262144) are run through the
  character automaton on device each step, stack and all, from each row's state.

A token is allowed when it keeps the text a JSON prefix and its closing cost (json_grammar) still
fits the tokens left after it: `cost(state after) <= remaining - 1`. The canonical closer of any state
lowers the cost by one, so some token is always allowed, and after the last token the value is whole.
Stop tokens are allowed only once the value is whole (cost 0). So, greedy or sampled, every output
parses; and where the unconstrained greedy text is JSON, and no prefix of it needs more tokens to
close than it has left, the constrained greedy text is the same text (the argmax is always allowed).

Shapes: B batch, V vocab, K bracket tokens, L the longest bracket token in characters.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from align.sampling import json_grammar as g

MAX_DEPTH = 24  # nesting the stack holds (one bit per level in an int32)


@flax.struct.dataclass
class JsonTables:
    next_lex: (
        jax.Array
    )  # [(N_LEX + 1) * N_CTX, V] int8: lex after a token without brackets; INVALID otherwise
    char_next: jax.Array  # [N_LEX + 1, N_CTX, N_CODES] int8 (json_grammar.char_tables)
    char_action: jax.Array  # same shape, int8: NONE / PUSH_OBJ / PUSH_ARR / POP
    lex_cost: jax.Array  # [N_LEX + 1, N_CTX] int32
    bracket_ids: jax.Array  # [K] int32: the tokens run through the automaton on device
    bracket_codes: jax.Array  # [K, L] int32 character codes, -1 after the token's end
    bracket_index: jax.Array  # [V] int32: position of a token in bracket_ids, -1 if it is not one
    stop_ids: jax.Array  # [S] int32: allowed once the value is whole


@flax.struct.dataclass
class JsonState:
    lex: jax.Array  # [B] int32
    depth: jax.Array  # [B] int32
    bits: jax.Array  # [B] int32: bit i = 1 when the container at level i is an object

    @classmethod
    def start(cls, batch: int) -> JsonState:
        zeros = jnp.zeros((batch,), jnp.int32)
        return cls(lex=zeros + g.VALUE, depth=zeros, bits=zeros)


def token_texts(tokenizer) -> list[str]:
    """Each token's text as decode writes it; '' for special tokens (never allowed in JSON mode)."""
    ids = [[i] for i in range(tokenizer.vocab_size)]
    return tokenizer.hf.batch_decode(ids, skip_special_tokens=True)


def _codes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """[V, L] int32 character codes (-1 padded) and lengths [V]."""
    lengths = np.array([len(t) for t in texts], np.int32)
    codes = np.full((len(texts), max(int(lengths.max()), 1)), -1, np.int32)
    for i, t in enumerate(texts):
        codes[i, : len(t)] = g.text_codes(t)
    return codes, lengths


def _table(codes: np.ndarray, lengths: np.ndarray, char_next: np.ndarray) -> np.ndarray:
    """[(N_LEX + 1) * N_CTX, V] lex after each token from each mode, for tokens that do not touch the stack.

    Tokens are visited longest first, so position p only steps the tokens longer than p.
    """
    order = np.argsort(-lengths, kind="stable")
    sorted_codes, sorted_len = codes[order], lengths[order]
    modes = np.arange((g.N_LEX + 1) * g.N_CTX)
    flat = char_next.astype(np.int32).reshape(-1)  # one 1-D take a step: faster than 3-array indexing
    base = ((modes % g.N_CTX) * g.N_CODES)[:, None]  # ctx's offset in a lex row
    lex = np.broadcast_to((modes // g.N_CTX)[:, None], (len(modes), len(order))).astype(np.int32)
    for p in range(codes.shape[1]):
        n = int(np.sum(sorted_len > p))
        lex[:, :n] = np.take(flat, lex[:, :n] * (g.N_CTX * g.N_CODES) + base + sorted_codes[None, :n, p])
    out = np.empty_like(lex)
    out[:, order] = lex
    return out.astype(np.int8)


def build_tables(texts: list[str], stop_ids, vocab_size: int | None = None) -> JsonTables:
    """Tables for a vocabulary whose token i decodes to texts[i] (padded with never-allowed ids to
    `vocab_size`, the model's logits width). Raises ValueError if a closing character has no token."""
    V = vocab_size or len(texts)
    texts = list(texts[:V]) + [""] * (V - len(texts))
    missing = sorted(g.closer_chars() - set(texts))
    if missing:
        raise ValueError(f"JSON mode needs a one-character token for each of {missing}; the vocab has none")
    char_next, char_action, lex_cost = g.char_tables()
    codes, lengths = _codes(texts)
    stops = set(int(s) for s in stop_ids)
    brackets = np.array([i for i, t in enumerate(texts) if any(c in t for c in "{}[]")], np.int32)
    next_lex = _table(codes, lengths, char_next)  # the sink's rows (an INVALID state) stay INVALID
    never = np.array([i for i, t in enumerate(texts) if not t or i in stops], np.int64)
    next_lex[:, never] = g.INVALID
    next_lex[:, brackets] = g.INVALID  # decided on device
    index = np.full((V,), -1, np.int32)
    index[brackets] = np.arange(len(brackets))
    width = max(int(lengths[brackets].max()) if len(brackets) else 1, 1)
    return JsonTables(
        next_lex=jnp.asarray(next_lex),
        char_next=jnp.asarray(char_next),
        char_action=jnp.asarray(char_action),
        lex_cost=jnp.asarray(lex_cost),
        bracket_ids=jnp.asarray(brackets),
        bracket_codes=jnp.asarray(codes[brackets, :width]),
        bracket_index=jnp.asarray(index),
        stop_ids=jnp.asarray(sorted(stops), jnp.int32),
    )


@functools.lru_cache(maxsize=4)
def json_tables(tokenizer, vocab_size: int | None = None) -> JsonTables:
    """build_tables for a Tokenizer, once per tokenizer and logits width in a process (a few seconds
    for Gemma's 262144 tokens)."""
    return build_tables(token_texts(tokenizer), tokenizer.stop_ids, vocab_size)


def _ctx(depth: jax.Array, bits: jax.Array) -> jax.Array:
    top_is_obj = (bits >> jnp.maximum(depth - 1, 0)) & 1
    return jnp.where(depth == 0, g.TOP, jnp.where(top_is_obj == 1, g.OBJ, g.ARR))


def cost(tables: JsonTables, s: JsonState) -> jax.Array:
    """[B] tokens the canonical closing path needs (0 = a whole value)."""
    return tables.lex_cost[s.lex, _ctx(s.depth, s.bits)] + s.depth


def run_chars(tables: JsonTables, s: JsonState, codes: jax.Array) -> JsonState:
    """Every row's state after the characters `codes` [..., L] (-1 = none), stack included.

    State arrays broadcast against codes[..., 0]; a push past MAX_DEPTH makes the state INVALID.
    """

    def step(state: JsonState, code):  # code [...]
        ctx = _ctx(state.depth, state.bits)
        live = code >= 0
        c = jnp.maximum(code, 0)
        lex = tables.char_next[state.lex, ctx, c].astype(jnp.int32)
        act = tables.char_action[state.lex, ctx, c]
        push = (act == g.PUSH_OBJ) | (act == g.PUSH_ARR)
        lex = jnp.where(push & (state.depth >= MAX_DEPTH), g.INVALID, lex)
        level = jnp.left_shift(1, jnp.minimum(state.depth, 30))
        bits = jnp.where(act == g.PUSH_OBJ, state.bits | level, state.bits)
        bits = jnp.where(act == g.PUSH_ARR, bits & ~level, bits)
        depth = state.depth + push.astype(jnp.int32) - (act == g.POP).astype(jnp.int32)
        new = JsonState(lex=lex, depth=depth, bits=bits)
        return jax.tree.map(lambda n, o: jnp.where(live, n, o), new, state), None

    shape = codes.shape[:-1]
    start = jax.tree.map(lambda x: jnp.broadcast_to(x, shape), s)
    out, _ = jax.lax.scan(step, start, jnp.moveaxis(codes, -1, 0))
    return out


def allowed(tables: JsonTables, s: JsonState, remaining) -> tuple[jax.Array, JsonState]:
    """(mask [B, V] of the tokens that may come next with `remaining` tokens left including this one,
    the states after each bracket token [B, K] for `advance`)."""
    B = s.lex.shape[0]
    left = jnp.broadcast_to(jnp.asarray(remaining, jnp.int32) - 1, (B,))[:, None]  # after this token
    ctx = _ctx(s.depth, s.bits)
    lex = tables.next_lex[s.lex * g.N_CTX + ctx].astype(jnp.int32)  # [B, V]
    mask = tables.lex_cost[lex, ctx[:, None]] + s.depth[:, None] <= left
    codes = jnp.broadcast_to(tables.bracket_codes[None], (B, *tables.bracket_codes.shape))
    after = run_chars(tables, jax.tree.map(lambda x: x[:, None], s), codes)  # [B, K]
    if tables.bracket_ids.shape[0]:
        mask = mask.at[:, tables.bracket_ids].set(cost(tables, after) <= left)
    whole = (cost(tables, s) == 0)[:, None]
    return mask.at[:, tables.stop_ids].set(whole), after


def advance(tables: JsonTables, s: JsonState, after: JsonState, token: jax.Array) -> JsonState:
    """The state after `token` [B] (a stop token leaves it as it is)."""
    ctx = _ctx(s.depth, s.bits)
    k = tables.bracket_index[token]  # [B]
    plain = tables.next_lex[s.lex * g.N_CTX + ctx, token].astype(jnp.int32)
    picked = jax.tree.map(lambda x: jnp.take_along_axis(x, jnp.maximum(k, 0)[:, None], 1)[:, 0], after)
    moved = jax.tree.map(lambda a, b: jnp.where(k >= 0, a, b), picked, s.replace(lex=plain))
    stop = jnp.any(token[:, None] == tables.stop_ids[None], axis=-1)
    return jax.tree.map(lambda a, b: jnp.where(stop, b, a), moved, s)
