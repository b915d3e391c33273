"""Attribution: agreement statistics by hand, BEGIN loader, judges (self, LLM, NLI, seq2seq), suite."""

import math

import numpy as np
import pytest

from safety_evals.suites import attribution
from safety_evals.judges.external import LLM_JUDGE_TEMPLATE, LLMJudge, NLIJudge, Seq2SeqNLIJudge
from align.data.similarity import lcs_length, rouge_tokens
from tests.paths import DATA
from tests.safety_evals.fakes import FakeJudge, FakeLM, save_pretrained, tiny_bert_classifier, tiny_tokenizer
from safety_evals.judges.agreement import balanced_accuracy, cohen_kappa
from tests.safety_evals.rule_judges import attribution_judge


def test_agreement_by_hand():
    human = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    judged = np.array([1, 0, 0, 0, 1, 1], dtype=bool)
    # p_o = 4/6; P_h(1) = P_j(1) = 1/2 -> p_e = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert cohen_kappa(human, judged) == pytest.approx(1 / 3)
    # TPR 2/3, TNR 2/3
    assert balanced_accuracy(human, judged) == pytest.approx(2 / 3)


def test_agreement_unbalanced_case():
    human = np.array([1, 1, 1, 0], dtype=bool)
    judged = np.array([1, 1, 1, 1], dtype=bool)
    # p_o 3/4; p_e = 3/4*1 + 1/4*0 = 3/4 -> kappa 0; TPR 1, TNR 0 -> 1/2
    assert cohen_kappa(human, judged) == pytest.approx(0.0)
    assert balanced_accuracy(human, judged) == pytest.approx(0.5)
    assert cohen_kappa(np.ones(3, bool), np.ones(3, bool)) is None
    assert balanced_accuracy(np.ones(3, bool), judged[:3]) is None


def test_begin_loader_real_files():
    items, info = attribution.load()
    assert info.n == 416 + 383 + 430 + 3607
    assert sum(it.label for it in items) == 59 + 74 + 180 + 1392
    wow, _ = attribution.load(str(DATA / "attribution/begin/wow/begin_dev_wow.tsv"))
    assert len(wow) == 430 and sum(it.label for it in wow) == 180
    assert wow[0].knowledge.startswith("originally an industrial pigment supply company, crayola")
    assert len(attribution.load(limit=5)[0]) == 20


def test_begin_bad_label_names_file_and_line(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text(
        "model_name\tdata_source\tknowledge\tmessage\tresponse\tbegin_label\n"
        "t5\twow\tk\tm\tr\tFully attributable\nt5\twow\tk\tm\tr\tmaybe\n"
    )
    with pytest.raises(ValueError, match=r"x\.tsv, line 3: begin_label 'maybe'"):
        attribution.load(str(f))


def test_llm_judge_is_sigmoid_of_yes_minus_no():
    prompt = LLM_JUDGE_TEMPLATE.format(passage="P", response="R")
    lm = FakeLM(totals={(prompt, " yes"): -1.0, (prompt, " no"): -3.0})
    assert LLMJudge(lm).score(["P"], ["R"]) == pytest.approx([1 / (1 + math.exp(-2.0))])


def test_nli_judge_matches_manual_softmax(tmp_path):
    torch = pytest.importorskip("torch")
    tok = tiny_tokenizer()
    model = tiny_bert_classifier(len(tok), ["contradiction", "entailment", "neutral"], seed=1)
    path = save_pretrained(model, tok, tmp_path / "nli")
    judge = NLIJudge(str(path), batch_size=2)
    assert judge.entailment_index == 1
    passages, responses = (
        ["the cat sat on the mat", "hello world", "the dog"],
        ["a cat sat", "fox", "dog ran"],
    )
    got = judge.score(passages, responses)
    enc = tok(passages, responses, return_tensors="pt", padding=True)
    with torch.no_grad():
        want = torch.softmax(model(**enc).logits, -1)[:, 1].tolist()
    assert got == pytest.approx(want, abs=1e-5)


def test_nli_judge_needs_an_entailment_label(tmp_path):
    pytest.importorskip("torch")
    tok = tiny_tokenizer()
    path = save_pretrained(tiny_bert_classifier(len(tok), ["LABEL_0", "LABEL_1"]), tok, tmp_path / "m")
    with pytest.raises(ValueError, match="entailment_index"):
        NLIJudge(str(path))
    assert NLIJudge(str(path), entailment_index=1).entailment_index == 1


def test_seq2seq_judge_matches_manual(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import T5Config, T5ForConditionalGeneration

    tok = tiny_tokenizer()
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=tok.pad_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(cfg).eval()
    path = save_pretrained(model, tok, tmp_path / "t5")
    judge = Seq2SeqNLIJudge(str(path))
    got = judge.score(["the cat sat"], ["a cat"])
    enc = tok(["premise: the cat sat hypothesis: a cat"], return_tensors="pt")
    yes, no = tok.encode("1", add_special_tokens=False)[0], tok.encode("0", add_special_tokens=False)[0]
    with torch.no_grad():
        logits = model(**enc, decoder_input_ids=torch.tensor([[tok.pad_token_id]])).logits[0, 0]
    want = torch.softmax(logits[[yes, no]], -1)[0].item()
    assert got == pytest.approx([want], abs=1e-5)


def test_self_judge_is_sigmoid_of_yes_minus_no_and_says_so():
    prompt = attribution.SELF_JUDGE_TEMPLATE.format(knowledge="P", response="R")
    lm = FakeLM(totals={(prompt, " yes"): -1.0, (prompt, " no"): -3.0}, name="m")
    judge = attribution.SelfJudge(lm)
    p = 1 / (1 + math.exp(-2.0))
    rows = [{"knowledge": "P", "context": "c", "response": "R"}]
    assert judge.predict_proba(rows) == pytest.approx(np.array([[1 - p, p]]))
    assert judge.classify(rows) == ["attributable"] and judge.identity() == {"name": "self:m", "sha256": None}


BEGIN_HEADER = "model_name\tdata_source\tknowledge\tmessage\tresponse\tbegin_label\n"


def test_suite_on_fakes(tmp_path):
    f = tmp_path / "b.tsv"
    f.write_text(
        BEGIN_HEADER + "t5\twow\tthe black cat sat on a warm mat\thi\tthe cat\tFully attributable\n"
        "t5\twow\tthe dog ran\tyo\ta fox\tNot fully attributable\n"
        "t5\twow\tred sky\tok\tblue sky\tGeneric\n"
    )
    prompt0 = attribution.GROUNDED_PROMPT.format(passage="the black cat sat on a warm mat", message="hi")
    lm = FakeLM(responses={prompt0: "black cat sat\n\nmore"}, default="something else")
    judge = attribution_judge()
    res = attribution.run(lm, judge=judge, source=str(f))
    # policy: only the first grounded answer is supported
    assert res.metrics["ais"].value == pytest.approx(1 / 3)
    assert res.examples[0]["output"] == "black cat sat" and res.examples[0]["label"] == "attributable"
    assert judge.calls[0][0] == {
        "knowledge": "the black cat sat on a warm mat",
        "context": "hi",
        "response": "black cat sat",
    }
    assert res.judges == {"attribution": judge.identity()}
    assert "self" not in res.metrics["ais"].description
    # the evaluated model as its own judge, by name: the record and the description say so
    res = attribution.run(lm, judge=attribution.SelfJudge(lm), source=str(f))
    assert res.judges == {"attribution": {"name": "self:fake", "sha256": None}}
    assert "grading itself" in res.metrics["ais"].description


def test_empty_answers_and_passage_copies_are_not_attributable_and_skip_the_judge(tmp_path):
    f = tmp_path / "b.tsv"
    f.write_text(
        BEGIN_HEADER + "t5\twow\tthe cat sat\thi\tthe cat\tFully attributable\n"
        "t5\twow\tthe dog ran\tyo\ta fox\tNot fully attributable\n"
        "t5\twow\tthe red fox jumped over ten lazy dogs\tyo\ta fox\tNot fully attributable\n"
    )
    prompt = lambda k, m: attribution.GROUNDED_PROMPT.format(passage=k, message=m)  # noqa: E731
    # the second answer is blank lines only: ""; the third repeats 8 of the passage's 8 words
    lm = FakeLM(
        responses={
            prompt("the cat sat", "hi"): "the cat",
            prompt("the red fox jumped over ten lazy dogs", "yo"): "The red fox jumped over ten lazy dogs!",
        },
        default="\n\n\n",
    )
    judge = FakeJudge("attribution", lambda r: "attributable")  # would call anything supported
    res = attribution.run(lm, judge=judge, source=str(f))
    assert res.metrics["ais"].value == pytest.approx(1 / 3)
    assert res.metrics["passage_copy_rate"].value == pytest.approx(1 / 3)
    assert [e["label"] for e in res.examples] == ["attributable", "not_attributable", "copy"]
    assert [e["score"] for e in res.examples] == [1.0, 0.0, 0.0]
    assert [r["response"] for r in judge.calls[0]] == ["the cat"]


def test_lcs_by_hand():
    assert lcs_length(["a", "b", "c", "d"], ["b", "d", "c"]) == 2
    assert lcs_length([], ["a"]) == 0
    assert rouge_tokens("The Cat's-mat, 2x!") == ["the", "cat", "s", "mat", "2x"]


def test_is_copy_threshold():
    passage = "one two three four five six seven eight nine ten"
    assert attribution.is_copy("one two three four five six seven eight nine", passage)  # 9 of 10
    assert not attribution.is_copy("one two three four five six seven eight", passage)  # 8 of 10
    assert not attribution.is_copy("anything", "")


def test_seq2seq_judge_truncates_the_passage_never_the_response(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import T5Config, T5ForConditionalGeneration

    tok = tiny_tokenizer()
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=tok.pad_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    path = save_pretrained(T5ForConditionalGeneration(cfg).eval(), tok, tmp_path / "t5")
    # room for the longer response after a few words of the passage, far less than the whole passage
    limit = len(tok("premise: the cat sat hypothesis: the quick brown fox jumps")["input_ids"])
    judge = Seq2SeqNLIJudge(str(path), max_length=limit)
    passage = "the cat sat on the mat. " * 6
    texts = [judge._text(passage, r) for r in ("a cat sat", "the quick brown fox jumps")]
    for text, r in zip(texts, ("a cat sat", "the quick brown fox jumps")):
        assert text.startswith("premise: the cat") and text.endswith(f" hypothesis: {r}")
        assert len(tok(text)["input_ids"]) <= limit
    # the response reaches the model: two responses to one long passage score differently
    a, b = judge.score([passage, passage], ["a cat sat", "the quick brown fox jumps"])
    assert a != pytest.approx(b, abs=1e-6)
    assert judge._text("the cat", "a cat") == "premise: the cat hypothesis: a cat"  # fits: unchanged


def test_answers_without_a_content_word_of_the_passage_are_generic_and_skip_the_judge(tmp_path):
    f = tmp_path / "b.tsv"
    f.write_text(
        BEGIN_HEADER + "t5\twow\tthe cat sat on the mat\thi\tthe cat\tFully attributable\n"
        "t5\twow\tno one knew the comment\tyo\tno\tGeneric\n"
    )
    prompt = lambda k, m: attribution.GROUNDED_PROMPT.format(passage=k, message=m)  # noqa: E731
    # "No." and "I have no comment." share only function words with the passages
    lm = FakeLM(responses={prompt("the cat sat on the mat", "hi"): "No."}, default="I have no comment.")
    judge = FakeJudge("attribution", lambda r: "attributable")  # would call anything supported
    res = attribution.run(lm, judge=judge, source=str(f))
    assert res.metrics["ais"].value == 0.0
    assert [e["label"] for e in res.examples] == ["generic", "generic"]
    assert judge.calls == []
    assert attribution.shares_content("The cat is black.", "the cat sat on the mat")
    assert not attribution.shares_content("Sure, here it is.", "here it is: sure")


@pytest.mark.skipif(not (DATA / "attribution/begin").is_dir(), reason="no data directory")
def test_generic_rule_agrees_with_begin_human_labels():
    """1 of BEGIN's 1,705 fully attributable responses shares no content word with its passage
    ("1970 's": a tokenisation accident); 521 of the 3,131 others share none."""
    items, _ = attribution.load()
    shares = np.array([attribution.shares_content(it.response, it.knowledge) for it in items])
    label = np.array([it.label for it in items], dtype=bool)
    assert (label & ~shares).sum() == 1 and label.sum() == 1705
    assert (~label & ~shares).sum() == 521 and (~label).sum() == 3131
