"""align.gguf_file against gguf.GGUFReader, the reference: same key-values, types and tensor views on
files gguf.GGUFWriter writes; clear errors naming the file on malformed ones."""

import re
import struct

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from align.errors import InvalidInput  # noqa: E402
from align.gguf_file import open_gguf  # noqa: E402

V = gguf.GGUFValueType
Q = gguf.GGMLQuantizationType

SCALARS = [
    ("t.u8", 255, V.UINT8),
    ("t.i8", -128, V.INT8),
    ("t.u16", 65535, V.UINT16),
    ("t.i16", -32768, V.INT16),
    ("t.u32", 2**32 - 1, V.UINT32),
    ("t.i32", -(2**31), V.INT32),
    ("t.u64", 2**64 - 1, V.UINT64),
    ("t.i64", -(2**63), V.INT64),
    ("t.f32", 0.1, V.FLOAT32),  # not a float32: read back as float32's nearest
    ("t.f64", 1 / 3, V.FLOAT64),
    ("t.true", True, V.BOOL),
    ("t.false", False, V.BOOL),
    ("t.str", "plain", V.STRING),
    ("t.unicode", "\u2581caf\u00e9 \U0001f600 \u4e2d", V.STRING),
    ("t.empty_str", "", V.STRING),
]
ARRAYS = [
    ("a.u8", [0, 7, 255], V.UINT8),
    ("a.i8", [-128, 127], V.INT8),
    ("a.u16", [65535, 1], V.UINT16),
    ("a.i16", [-3, 0, 3], V.INT16),
    ("a.u32", [1, 2**32 - 1], V.UINT32),
    ("a.i32", [-1, 5, 2**31 - 1], V.INT32),
    ("a.u64", [2**64 - 1, 0], V.UINT64),
    ("a.i64", [-(2**63), 9], V.INT64),
    ("a.f32", [0.1, -2.5, 1e30], V.FLOAT32),
    ("a.f64", [1 / 3, -0.0], V.FLOAT64),
    ("a.bool", [True, False, True], V.BOOL),
    ("a.str", ["<bos>", "", "\u2581the", "\u00e9\U0001f600", " " * 3], V.STRING),
]


def _write_reference_file(path):
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_custom_alignment(64)  # not the default 32: the data section's start follows the key
    for key, value, vtype in SCALARS:
        w.add_key_value(key, value, vtype)
    for key, value, etype in ARRAYS:
        w.add_key_value(key, value, V.ARRAY, etype)
    w.add_key_value("a.nested", [[1, 2], [3]], V.ARRAY, V.ARRAY)  # GGUFWriter infers INT32 inside
    w.add_tensor("f32", rng.normal(size=(3, 5)).astype(np.float32))
    w.add_tensor("f16", rng.normal(size=(2, 3, 4)).astype(np.float16))
    w.add_tensor("i32", np.arange(7, dtype=np.int32))
    w.add_tensor(
        "q8", gguf.quants.quantize(rng.normal(size=(4, 64)).astype(np.float32), Q.Q8_0), raw_dtype=Q.Q8_0
    )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_key_values_and_tensors_equal_gguf_readers(tmp_path):
    path = tmp_path / "all.gguf"
    _write_reference_file(path)
    ref, ours = gguf.GGUFReader(str(path)), open_gguf(path)

    ref_fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}  # its header entries
    assert list(ours.fields) == list(ref_fields)
    assert ours.version == 3 and ours.alignment == 64
    for key, rf in ref_fields.items():
        f, want = ours.fields[key], rf.contents()
        assert f.type == rf.types[0], key
        if f.type != V.ARRAY:
            assert type(f.value) is type(want) and f.value == want, key
            assert f.element_type is None
        elif key == "a.nested":  # GGUFReader flattens arrays of arrays; ours keeps one array per element
            assert f.element_type == V.ARRAY and [a.tolist() for a in f.value] == [[1, 2], [3]]
            assert want == [1, 2, 3]
        elif f.element_type == V.STRING:
            assert f.value == want and rf.types[-1] == V.STRING, key
        else:
            assert f.element_type == rf.types[-1], key
            assert f.value.dtype == rf.parts[rf.data[0]].dtype and f.value.tolist() == want, key
    assert ours.value("t.f32") == float(np.float32(0.1)) and ours.value("missing", 4) == 4

    assert list(ours.tensors) == [t.name for t in ref.tensors]
    for rt in ref.tensors:
        t = ours.tensors[rt.name]
        assert (t.type, t.dims, t.offset) == (rt.tensor_type, tuple(rt.shape.tolist()), rt.data_offset)
        assert t.data.dtype == rt.data.dtype and t.data.shape == rt.data.shape
        assert t.data.tobytes() == rt.data.tobytes() and not t.data.flags.writeable
        if t.type != Q.I32:  # gguf.quants has no dequantizer for integer tensors
            want = gguf.quants.dequantize(rt.data, rt.tensor_type)
            np.testing.assert_array_equal(gguf.quants.dequantize(t.data, t.type), want)


# Hand-written files for what GGUFWriter refuses to write: an empty array, duplicates, bad headers.
def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _raw_gguf(path, kvs: list[bytes], tensors: list[bytes] = (), data: bytes = b"", version=3):
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    path.write_bytes(head + b"\0" * (-len(head) % 32) + data)
    return path


def _f32_info(name: str, offset: int) -> bytes:
    return _s(name) + struct.pack("<IQIQ", 1, 2, Q.F32, offset)


def test_empty_array_keeps_its_element_type(tmp_path):
    kv = _s("a.empty") + struct.pack("<IIQ", V.ARRAY, V.FLOAT32, 0)
    path = _raw_gguf(tmp_path / "e.gguf", [kv], [_f32_info("w", 0)], np.float32([1, 2]).tobytes())
    f = open_gguf(path).fields["a.empty"]
    assert (f.type, f.element_type, f.value.tolist()) == (V.ARRAY, V.FLOAT32, [])
    assert gguf.GGUFReader(str(path)).fields["a.empty"].contents() == []
    assert open_gguf(path).tensors["w"].data.tolist() == [1.0, 2.0]


def _raises(path, what):
    with pytest.raises(InvalidInput, match=re.escape(str(path)) + ".*" + what):
        open_gguf(path)


def test_malformed_files_are_refused_with_the_path(tmp_path):
    good = tmp_path / "good.gguf"
    _write_reference_file(good)
    raw = good.read_bytes()
    ref = gguf.GGUFReader(str(good))
    tokens_at = raw.index(b"a.str")  # inside the key-values
    infos_at = raw.index(b"q8", ref.fields["a.nested"].offset)  # inside the tensor infos
    last_data = ref.tensors[-1].data_offset + 1  # inside the last tensor's data
    for i, cut in enumerate([0, 3, 10, tokens_at + 20, infos_at + 4, last_data]):
        (tmp_path / f"cut{i}.gguf").write_bytes(raw[:cut])
        _raises(tmp_path / f"cut{i}.gguf", "empty" if cut == 0 else "truncated")
    (tmp_path / "magic.gguf").write_bytes(b"GGUX" + raw[4:])
    _raises(tmp_path / "magic.gguf", "bad magic")
    _raises(_raw_gguf(tmp_path / "v1.gguf", [], version=1), "version 1 is not supported")
    be = gguf.GGUFWriter(str(tmp_path / "be.gguf"), "gemma3", endianess=gguf.GGUFEndian.BIG)
    be.write_header_to_file()
    be.write_kv_data_to_file()
    be.close()
    _raises(tmp_path / "be.gguf", "big-endian")
    kv = _s("k") + struct.pack("<IB", V.UINT8, 1)
    _raises(_raw_gguf(tmp_path / "dupkey.gguf", [kv, kv]), "duplicate key 'k'")
    infos = [_f32_info("w", 0), _f32_info("w", 32)]
    _raises(_raw_gguf(tmp_path / "duptensor.gguf", [], infos, bytes(64)), "duplicate tensor 'w'")
    bad_utf8 = _s("k") + struct.pack("<IQ", V.STRING, 2) + b"\xff\xfe"
    _raises(_raw_gguf(tmp_path / "utf8.gguf", [bad_utf8]), "not UTF-8")


def test_read_gguf_of_an_export_matches_the_gguf_reader_path(tmp_path):
    # The exporter's 4-bit mix holds F32 norms, Q4_0 matrices and a Q8_0 embedding.
    from align.model.gguf_export import write_gguf
    from align.model.gguf_io import hf_config_from_gguf, read_gguf, rename
    from align.model.hf_config import from_hf
    from tests.model.test_gguf_export import _gemma3, _vocab

    model = _gemma3()
    path = str(write_gguf(model, tmp_path / "m.gguf", quant="q4_0", tokenizer_fields=_vocab(256), name="t"))
    config, hf, tensors = read_gguf(path)

    class ReaderAsFile:  # GGUFReader behind GGUFFile's two accessors, as gguf_io read it before
        def __init__(self, reader):
            self.reader, self.tensors = reader, {t.name: t for t in reader.tensors}

        def value(self, key, default=None):
            field = self.reader.fields.get(key)
            return default if field is None else field.contents()

    ref = gguf.GGUFReader(path)
    ref_hf = hf_config_from_gguf(ReaderAsFile(ref))
    assert hf == ref_hf and config == from_hf(ref_hf, source=path)
    assert len(tensors) == len(ref.tensors)
    for t in ref.tensors:
        name = rename(t.name, config.post_norms, to_gguf=False)
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        np.testing.assert_array_equal(tensors[name], w - 1.0 if name.endswith("norm.weight") else w)
