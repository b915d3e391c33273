"""RL prompt data: every row with a prompt counts, whatever its format, and mixtures keep their shares."""

import json

import pytest

from align.data import Tokenizer
from align.data.prompts import encode_prompt
from align.data.testing import tiny_tokenizer
from align.data.splits import SplitOptions
from pipelines.stages.rl_data import PromptDataOptions, PromptSource, load_prompts

U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "yo"}
SAME_HH = "\n\nHuman: hi\n\nAssistant: yo"
NO_HELD = SplitOptions(heldout_fraction=0.0, heldout_max=0)


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_mixed_formats_and_pairs_without_preference_all_give_prompts(tmp_path):
    rows = [
        {"messages": [U, A]},
        {"chosen": SAME_HH, "rejected": SAME_HH},
        {"prompt": "p"},
        {"prompt": "q", "completion": "c"},
        {"chosen": "x", "rejected": "x"},
    ]  # the last has no prompt
    tok = Tokenizer(tiny_tokenizer())
    train, held, report = load_prompts(
        PromptDataOptions(path=write(tmp_path / "d.jsonl", rows), heldout=NO_HELD), tok
    )
    assert (len(train), len(held)) == (4, 0)
    assert report["sources"] == [
        {"path": str(tmp_path / "d.jsonl"), "rows_loaded": 4, "rows_skipped": 1, "used": 4}
    ]
    # the chat row and the HH pair without a preference give the same prompt: the user turn
    assert list(train[0]) == list(train[1]) == list(encode_prompt([U], tok))


def test_mixture_takes_exact_shares(tmp_path):
    a = write(tmp_path / "a.jsonl", [{"prompt": f"a{i}"} for i in range(10)])
    b = write(tmp_path / "b.jsonl", [{"prompt": f"b{i}"} for i in range(3)])
    options = PromptDataOptions(mixture=(PromptSource(a, 0.5), PromptSource(b, 0.5)), heldout=NO_HELD)
    train, _, report = load_prompts(options, Tokenizer(tiny_tokenizer()))
    assert [s["used"] for s in report["sources"]] == [3, 3] and len(train) == 6


def test_system_handling_drop_removes_the_prompts_system_message_as_the_exported_template_does():
    from align.data.formats import PromptExample
    from pipelines.stages.rl_data import with_system_prompt

    system, user = {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}
    chat = PromptExample([system, user], "f:1")
    bare = PromptExample([{"role": "user", "content": "Hi"}], "f:2")
    assert with_system_prompt(chat, None, "drop").prompt == [{"role": "user", "content": "Hi"}]
    assert with_system_prompt(bare, None, "drop") == bare
    assert with_system_prompt(chat, "Be kind.").prompt == chat.prompt  # fold keeps the row's own
    assert with_system_prompt(bare, "Be kind.").prompt[0] == {"role": "system", "content": "Be kind."}
    with pytest.raises(ValueError, match="never used"):
        PromptDataOptions(system_prompt="x", system_handling="drop")
    with pytest.raises(ValueError, match="expected 'fold' or 'drop'"):
        PromptDataOptions(system_handling="keep")
