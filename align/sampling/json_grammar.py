"""JSON (RFC 8259) as a character automaton with a bounded stack: the tables JSON mode is built from.

A parser state is (lex, depth, bits). `lex` is one of `N_LEX` lexer positions (expect a value, inside
a key string, after the `e` of a number, ...); the stack holds the open containers, one bit each
(1 = object, 0 = array) in the low `depth` bits of `bits`. Which container is innermost, the context
`ctx` (TOP, OBJ or ARR), is read off the stack; the character tables are indexed by (lex, ctx, code)
and say the next lex and what the character does to the stack (push or pop), so a step needs no
branches and runs the same in numpy (table building) and in jnp (on device).

A character's code is its ASCII value, or `OTHER` for every non-ASCII character (all alike: allowed
inside strings only). `INVALID` is a sink lex: once there, every character stays there.

The closing cost of a state, `lex_cost[lex, ctx] + depth`, is the number of one-character tokens of
the canonical way to finish the value (`closer`): e.g. inside a key string `"`, `:`, `0`, then one `}`
or `]` per open container. Each closer lowers it by exactly one, which is what lets JSON mode reserve
the tokens it needs to close (json_mode).
"""

from __future__ import annotations

import functools

import numpy as np

TOP, OBJ, ARR = 0, 1, 2
N_CTX = 3
OTHER = 128  # the code of every non-ASCII character
N_CODES = 129
WHITESPACE = " \t\n\r"
NONE, PUSH_OBJ, PUSH_ARR, POP = 0, 1, 2, 3

# lexer positions
VALUE, ARR_START, OBJ_START, KEY, COLON, AFTER = range(6)  # AFTER: a value just ended
_STRING = 6  # 6 + 6 * is_value + {0: inside, 1: after a backslash, 2..5: 4..1 hex digits of \u to go}
N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP = range(18, 26)
_LITERAL = 26  # true (3 positions), false (4), null (3): after 1.. len-1 of their letters
LITERALS = ("true", "false", "null")
N_LEX = 36
INVALID = N_LEX  # the sink
NUMBER_ENDS = (N_ZERO, N_INT, N_FRAC, N_EXP)  # a number may stop here (a delimiter then ends it)
CLOSABLE = (AFTER, ARR_START, OBJ_START, *NUMBER_ENDS)  # lex_cost 0: only the containers to close


def string_lex(is_value: bool, offset: int = 0) -> int:
    return _STRING + 6 * int(is_value) + offset


def _literal_lex(word: int, consumed: int) -> int:
    return _LITERAL + sum(len(w) - 1 for w in LITERALS[:word]) + consumed - 1


def _value_start(ch: str) -> tuple[int, int] | None:
    """The first character of a value."""
    if ch == "{":
        return OBJ_START, PUSH_OBJ
    if ch == "[":
        return ARR_START, PUSH_ARR
    if ch == '"':
        return string_lex(True), NONE
    if ch == "-":
        return N_MINUS, NONE
    if ch == "0":
        return N_ZERO, NONE
    if ch in "123456789":
        return N_INT, NONE
    for w, word in enumerate(LITERALS):
        if ch == word[0]:
            return _literal_lex(w, 1), NONE
    return None


def _after_value(ch: str, ctx: int) -> tuple[int, int] | None:
    if ch in WHITESPACE:
        return AFTER, NONE
    if ctx == OBJ and ch == ",":
        return KEY, NONE
    if ctx == ARR and ch == ",":
        return VALUE, NONE
    if (ctx, ch) in ((OBJ, "}"), (ARR, "]")):
        return AFTER, POP
    return None


def _string_step(lex: int, ch: str) -> tuple[int, int] | None:
    is_value, offset = divmod(lex - _STRING, 6)
    if offset == 0:
        if ch == '"':
            return (AFTER if is_value else COLON), NONE
        if ch == "\\":
            return string_lex(is_value, 1), NONE
        return None if ord(ch) < 0x20 else (lex, NONE)  # control characters must be escaped
    if offset == 1:
        if ch == "u":
            return string_lex(is_value, 2), NONE
        return (string_lex(is_value), NONE) if ch in '"\\/bfnrt' else None
    if ch not in "0123456789abcdefABCDEF":
        return None
    return (string_lex(is_value) if offset == 5 else lex + 1), NONE


_NUMBER = {  # (lex, character class) -> next lex; a class missing ends the number (or is an error)
    (N_MINUS, "0"): N_ZERO,
    (N_MINUS, "1"): N_INT,
    (N_ZERO, "."): N_DOT,
    (N_ZERO, "e"): N_E,
    (N_INT, "0"): N_INT,
    (N_INT, "1"): N_INT,
    (N_INT, "."): N_DOT,
    (N_INT, "e"): N_E,
    (N_DOT, "0"): N_FRAC,
    (N_DOT, "1"): N_FRAC,
    (N_FRAC, "0"): N_FRAC,
    (N_FRAC, "1"): N_FRAC,
    (N_FRAC, "e"): N_E,
    (N_E, "+"): N_ESIGN,
    (N_E, "0"): N_EXP,
    (N_E, "1"): N_EXP,
    (N_ESIGN, "0"): N_EXP,
    (N_ESIGN, "1"): N_EXP,
    (N_EXP, "0"): N_EXP,
    (N_EXP, "1"): N_EXP,
}


def _number_step(lex: int, ch: str, ctx: int) -> tuple[int, int] | None:
    cls = {"0": "0", ".": ".", "e": "e", "E": "e", "+": "+", "-": "+"}.get(ch, "1" if ch.isdigit() else ch)
    nxt = _NUMBER.get((lex, cls))
    if nxt is not None and ch.isascii():
        return nxt, NONE
    return _after_value(ch, ctx) if lex in NUMBER_ENDS else None


def char_step(lex: int, ctx: int, ch: str) -> tuple[int, int] | None:
    """(next lex, stack action) after character `ch`, or None if no JSON text continues so."""
    if lex in (VALUE, ARR_START, COLON, OBJ_START, KEY) and ch in WHITESPACE:
        return lex, NONE
    if lex in (VALUE, ARR_START):
        if lex == ARR_START and ch == "]":
            return AFTER, POP
        return _value_start(ch)
    if lex == OBJ_START and ch == "}":
        return AFTER, POP
    if lex in (OBJ_START, KEY):
        return (string_lex(False), NONE) if ch == '"' else None
    if lex == COLON:
        return (VALUE, NONE) if ch == ":" else None
    if lex == AFTER:
        return _after_value(ch, ctx)
    if lex < N_MINUS:
        return _string_step(lex, ch)
    if lex < _LITERAL:
        return _number_step(lex, ch, ctx)
    for w, word in enumerate(LITERALS):
        for consumed in range(1, len(word)):
            if lex == _literal_lex(w, consumed):
                if ch != word[consumed]:
                    return None
                return (AFTER if consumed == len(word) - 1 else _literal_lex(w, consumed + 1)), NONE
    raise AssertionError(f"lex {lex} has no rule")


def closer(lex: int) -> str | None:
    """The canonical next character towards a finished value (None when only containers are open)."""
    if lex in CLOSABLE:
        return None
    if lex in (VALUE, N_MINUS, N_DOT, N_E, N_ESIGN):
        return "0"
    if lex == KEY:
        return '"'
    if lex == COLON:
        return ":"
    if _STRING <= lex < N_MINUS:
        offset = (lex - _STRING) % 6
        return {0: '"', 1: "n"}.get(offset, "0")
    for w, word in enumerate(LITERALS):
        for consumed in range(1, len(word)):
            if lex == _literal_lex(w, consumed):
                return word[consumed]
    raise AssertionError(f"lex {lex} has no closer")


def _char(code: int) -> str:
    return chr(code) if code < OTHER else "\u00e9"  # any non-ASCII character stands for all of them


@functools.lru_cache(maxsize=1)
def char_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(next lex [N_LEX + 1, N_CTX, N_CODES] int8, action [same] int8, lex_cost [N_LEX + 1, N_CTX] int32).

    Row INVALID is the sink: every character leads back to it. Its cost is too large to ever fit.
    """
    nxt = np.full((N_LEX + 1, N_CTX, N_CODES), INVALID, np.int8)
    act = np.zeros_like(nxt)
    for lex in range(N_LEX):
        for ctx in range(N_CTX):
            for code in range(N_CODES):
                out = char_step(lex, ctx, _char(code))
                if out is not None:
                    nxt[lex, ctx, code], act[lex, ctx, code] = out
    cost = np.full((N_LEX + 1, N_CTX), 1 << 20, np.int32)
    for ctx in range(N_CTX):
        for lex in range(N_LEX):
            n, at = 0, lex
            while (ch := closer(at)) is not None:
                at, n = char_step(at, ctx, ch)[0], n + 1
            cost[lex, ctx] = n
    return nxt, act, cost


def text_codes(text: str) -> list[int]:
    return [ord(c) if ord(c) < OTHER else OTHER for c in text]


def closer_chars() -> set[str]:
    """Every character a closing path may need, the container closers included."""
    return {c for lex in range(N_LEX) if (c := closer(lex)) is not None} | {"}", "]"}
