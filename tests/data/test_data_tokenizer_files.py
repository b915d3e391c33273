"""load_tokenizer on a bare tokenizer.json: special tokens come from the vocabulary."""

import json

import pytest

from align.data.testing import tiny_tokenizer
from align.data.tokenizer import load_tokenizer
from align.errors import InvalidInput


def test_a_bare_tokenizer_json_gets_gemmas_special_tokens(tmp_path):
    path = tmp_path / "tokenizer.json"
    tiny_tokenizer().backend_tokenizer.save(str(path))
    tok = load_tokenizer(path)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.hf.unk_token_id) == (2, 1, 0, 3)
    assert tok.stop_ids == (1, 6)
    chat = [{"role": "user", "content": "hi"}]
    assert tok.encode_chat(chat).tokens.tolist() == tiny_tokenizer().apply_chat_template(chat)["input_ids"]


def test_a_tokenizer_json_without_bos_is_a_clear_error(tmp_path):
    path = tmp_path / "tokenizer.json"
    tiny_tokenizer().backend_tokenizer.save(str(path))
    spec = json.loads(path.read_text())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<bos>"]
    del spec["model"]["vocab"]["<bos>"]
    spec["post_processor"] = None
    path.write_text(json.dumps(spec))
    with pytest.raises(InvalidInput, match=r"tokenizer\.json.*no <bos> token"):
        load_tokenizer(path)
