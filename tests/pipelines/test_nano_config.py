"""configs/distill/gemma3_270m_nano.yaml keeps a student that GGUF can hold: gemma3's global layers sit
at 6k + 5 and GGUF / llama.cpp rebuild them by that period, so the student must keep it. The teacher
here has gemma3-270m's depth and layer pattern at tiny widths (the weights are not under test)."""

import pytest
from flax import nnx

gguf = pytest.importorskip("gguf")

from align.config_io import load_config  # noqa: E402
from align.errors import InvalidInput  # noqa: E402
from align.model import Decoder, ModelConfig  # noqa: E402
from align.model.gguf_export import write_gguf  # noqa: E402
from align.rl.distill import kept_layers, student_from_teacher  # noqa: E402
from pipelines.stages.distill import DistillConfig  # noqa: E402
from tests.model.test_gguf_export import _vocab  # noqa: E402
from tests.paths import CONFIGS  # noqa: E402


def _teacher() -> Decoder:
    real = ModelConfig.gemma3_270m()
    c = ModelConfig.tiny(vocab_size=256).replace(
        num_layers=real.num_layers, layer_types=real.layer_types, head_dim=16, query_pre_attn_scalar=16
    )
    return Decoder(c, rngs=nnx.Rngs(0))


def test_the_nano_student_exports_to_gguf_and_the_even_layers_would_not(tmp_path):
    s = load_config(DistillConfig, CONFIGS / "distill" / "gemma3_270m_nano.yaml").student
    teacher = _teacher()
    keep = kept_layers(teacher.config.num_layers, s.keep, s.num_layers)
    assert keep == list(range(9))  # half the depth, global layer 5 kept at index 5
    student = student_from_teacher(teacher, keep)
    assert student.config.layer_types == ("local",) * 5 + ("global",) + ("local",) * 3
    path = write_gguf(student, tmp_path / "nano.gguf", quant="q8_0", tokenizer_fields=_vocab(256), name="n")
    assert gguf.GGUFReader(str(path)).fields["gemma3.block_count"].contents() == 9
    even = student_from_teacher(teacher, kept_layers(teacher.config.num_layers, "every_other"))
    assert "global" not in even.config.layer_types  # 6k + 5 is odd: every global layer dropped
    with pytest.raises(InvalidInput, match="layer_types"):
        write_gguf(even, tmp_path / "even.gguf", quant="q8_0", tokenizer_fields=_vocab(256), name="e")
