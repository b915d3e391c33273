"""`HFTorchLM`: a transformers + torch causal LM behind the `LanguageModel` interface.

The reference implementation for comparisons and benchmarks (e.g. CrowS-Pairs vs lm-eval). It
scores as lm-evaluation-harness's HFLM does (see `lm.py`): right-padded batches, log_softmax in
float32, the last len(cont) positions gathered. torch/transformers are imported lazily (the
`torch` extra); the JAX path never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from align.data.chat import END_OF_TURN
from safety_evals.lm.protocol import TokenScores, batched, encode_request, scoring_window, truncate_at_stop


class HFTorchLM:
    """Wraps a transformers causal LM and its tokenizer.

    Args:
      model: a `PreTrainedModel` for causal LM (or a path/hub id, loaded with AutoModelForCausalLM).
      tokenizer: the matching tokenizer (or None to load it from `model` when that is a path).
      add_bos: prepend BOS when encoding (None: True for Gemma models, as lm-eval forces).
      max_length: context window for scoring (None: the config's max_position_embeddings).
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        name: str | None = None,
        batch_size: int = 8,
        add_bos: bool | None = None,
        max_length: int | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ):
        import torch
        import transformers

        self.torch = torch
        if isinstance(model, str):
            name = name or model
            tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(model)
            model = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype))
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.name = name or str(getattr(model.config, "name_or_path", "hf-model"))
        self.batch_size = batch_size
        self.device = device
        model_type = str(getattr(model.config, "model_type", ""))
        self.add_bos = ("gemma" in model_type) if add_bos is None else add_bos
        self.max_length = max_length or int(model.config.max_position_embeddings)
        bos = tokenizer.bos_token_id
        self.prefix_id = bos if bos is not None else tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = stop_token_ids(model, tokenizer)

    # ------------------------------------------------------------------ tokenization
    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        """Token ids; with special tokens, BOS is added only when this model wants it."""
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens and self.add_bos))

    def encode_request(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return encode_request(
            context, continuation, encode=self.encode, prefix_id=self.prefix_id, add_bos=self.add_bos
        )

    # ------------------------------------------------------------------ scoring
    def loglikelihood_tokens(self, requests: Sequence[tuple[list[int], list[int]]]) -> list[TokenScores]:
        """Score pre-tokenized (context ids, continuation ids) pairs."""
        torch = self.torch
        windows = [scoring_window(c, k, self.max_length) for c, k in requests]
        # longest first, as lm-eval sorts, so a batch wastes little padding
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][0]))
        out: list[TokenScores | None] = [None] * len(windows)
        for chunk in batched(order, self.batch_size):
            width = max(len(windows[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                toks = windows[i][0]
                ids[row, : len(toks)] = torch.tensor(toks)
                mask[row, : len(toks)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()  # [B, T, V]
            for row, i in enumerate(chunk):
                toks, n_cont = windows[i]
                cont = requests[i][1][-n_cont:] if n_cont else []
                end = len(toks)
                lp = logp[row, end - n_cont : end]  # [n_cont, V]
                target = torch.tensor(cont, dtype=torch.long)
                picked = lp.gather(1, target[:, None])[:, 0] if n_cont else torch.zeros(0)
                greedy = bool((lp.argmax(-1) == target).all()) if n_cont else True
                out[i] = TokenScores(tuple(float(x) for x in picked), greedy)
        return out  # type: ignore[return-value]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[TokenScores]:
        return self.loglikelihood_tokens([self.encode_request(c, k) for c, k in requests])

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        num_samples: int = 1,
        seed: int = 0,
        stop: Sequence[str] = (),
    ) -> list[list[str]]:
        torch = self.torch
        torch.manual_seed(seed)
        sample = temperature > 0.0
        out: list[list[str]] = []
        for chunk in batched(list(prompts), self.batch_size):
            encoded = [self.encode(p, True) for p in chunk]
            width = max(len(e) for e in encoded)
            # left padding keeps every prompt's last token at the same position for decoding
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, e in enumerate(encoded):
                ids[row, width - len(e) :] = torch.tensor(e)
                mask[row, width - len(e) :] = 1
            # greedy decoding gives one sequence per prompt (transformers refuses num_return_sequences > 1
            # without sampling); it is repeated below, as JaxLM's independent greedy rows are identical
            per_prompt = num_samples if sample else 1
            kwargs = {
                "do_sample": sample,
                "max_new_tokens": max_new_tokens,
                "num_return_sequences": per_prompt,
                "pad_token_id": self.pad_id,
                "eos_token_id": list(self.stop_ids),
            }
            if sample:
                kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
            with torch.no_grad():
                gen = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device), **kwargs
                )
            texts = self.tokenizer.batch_decode(gen[:, width:].cpu(), skip_special_tokens=True)
            for row in range(len(chunk)):
                mine = [truncate_at_stop(t, stop) for t in texts[row * per_prompt : (row + 1) * per_prompt]]
                out.append(mine if sample else mine * num_samples)
        return out


def stop_token_ids(model, tokenizer) -> tuple[int, ...]:
    """Ids that end a generation, as JaxLM stops (align Tokenizer.stop_ids): <eos>, and <end_of_turn>
    when the vocabulary has it, plus whatever the model's generation config lists. A base
    checkpoint's config names only <eos>, so without this a chat-tuned model would run on past its
    <end_of_turn> (dropped from the text as a special token) into a made-up next turn."""
    config = getattr(model, "generation_config", None)
    listed = getattr(config, "eos_token_id", None)
    listed = [] if listed is None else [listed] if isinstance(listed, int) else list(listed)
    end_of_turn = tokenizer.get_vocab().get(END_OF_TURN)
    ids = [tokenizer.eos_token_id, end_of_turn, *listed]
    return tuple(dict.fromkeys(int(i) for i in ids if i is not None))
