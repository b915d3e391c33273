"""A GGUF file's key-values and tensor views, parsed with `struct` rather than `gguf.GGUFReader`.

GGUFReader builds numpy views per array element (millions for a 262K-token vocabulary, so it is slow
on every load); here string arrays decode in one Python loop and numeric arrays in one `np.frombuffer`.
Tensors stay views of one read-only `np.memmap`, shaped as GGUFReader shapes them, so
`gguf.quants.dequantize(tensor.data, tensor.type)` works unchanged. Little-endian files only: a
big-endian GGUF (rare; llama.cpp writes one only on request) is refused.

Layout (github.com/ggml-org/ggml, docs/gguf.md): magic "GGUF", u32 version, u64 tensor count, u64
key-value count; each key-value is a string key, a u32 value type and the value; each tensor info is a
string name, u32 rank, u64 dims (fastest-varying first), u32 GGML type and a u64 offset into the data
section, which starts at the next multiple of `general.alignment` (default 32). A string is a u64 byte
count and UTF-8 bytes; an array is a u32 element type, a u64 count and the elements.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from gguf.quants import quant_shape_to_byte_shape

from align.errors import InvalidInput

V = GGUFValueType
Q = GGMLQuantizationType
# struct format of each fixed-size value type; numpy reads the same letters as the same dtypes.
_FORMATS = {
    V.UINT8: "<B",
    V.INT8: "<b",
    V.UINT16: "<H",
    V.INT16: "<h",
    V.UINT32: "<I",
    V.INT32: "<i",
    V.FLOAT32: "<f",
    V.BOOL: "<?",
    V.UINT64: "<Q",
    V.INT64: "<q",
    V.FLOAT64: "<d",
}
_DTYPES = {vtype: np.dtype(fmt) for vtype, fmt in _FORMATS.items()}
# Tensor types GGUFReader exposes as elements; every other (quantized) type is exposed as raw bytes.
_ELEMENT_DTYPES = {
    Q.F32: "<f4",
    Q.F16: "<f2",
    Q.F64: "<f8",
    Q.I8: "i1",
    Q.I16: "<i2",
    Q.I32: "<i4",
    Q.I64: "<i8",
}
_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32


@dataclasses.dataclass(frozen=True)
class Field:
    """One key-value. `value`: a Python scalar or str; for an array a numpy array of `element_type`
    (exact dtype, no per-element objects), a list[str], or for an array of arrays a list of those."""

    value: Any
    type: GGUFValueType
    element_type: GGUFValueType | None = None  # arrays only


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One tensor; `data` is a read-only view of the file: elements for float and integer types, shaped
    by the reversed dims, and uint8 bytes shaped by gguf.quants.quant_shape_to_byte_shape otherwise."""

    name: str
    type: GGMLQuantizationType
    dims: tuple[int, ...]  # GGUF's order, fastest-varying first: numpy's shape reversed
    offset: int  # of the data, from the start of the file
    data: np.ndarray = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class GGUFFile:
    """A parsed GGUF file; its tensors' data keep the file mapped while they live."""

    path: str
    version: int
    alignment: int
    fields: dict[str, Field] = dataclasses.field(repr=False)  # in file order
    tensors: dict[str, Tensor] = dataclasses.field(repr=False)  # in file order

    def value(self, key: str, default: Any = None) -> Any:
        """A key's value, or `default` when the file does not have it."""
        field = self.fields.get(key)
        return default if field is None else field.value


class _Parser:
    """A cursor over the file's bytes; every read checks bounds so a truncated file names itself."""

    def __init__(self, buf: memoryview, path: str):
        self.buf, self.pos, self.path = buf, 0, path

    def error(self, what: str) -> InvalidInput:
        return InvalidInput(f"{self.path}: not a valid GGUF file: {what}")

    def truncated(self) -> InvalidInput:
        return self.error(f"truncated (it ends after {len(self.buf)} bytes)")

    def unpack(self, fmt: str) -> tuple:
        try:
            out = struct.unpack_from(fmt, self.buf, self.pos)
        except struct.error:
            raise self.truncated() from None
        self.pos += struct.calcsize(fmt)
        return out

    def string(self) -> str:
        (n,) = self.unpack("<Q")
        return self._decode(n)

    def _decode(self, n: int) -> str:
        end = self.pos + n
        if end > len(self.buf):
            raise self.truncated()
        try:
            s = str(self.buf[self.pos : end], "utf-8")
        except UnicodeDecodeError as e:
            raise self.error(f"a string at byte {self.pos} is not UTF-8 ({e.reason})") from None
        self.pos = end
        return s

    def value_type(self) -> GGUFValueType:
        (raw,) = self.unpack("<I")
        try:
            return V(raw)
        except ValueError:
            raise self.error(f"unknown value type {raw} at byte {self.pos - 4}") from None

    def value(self, vtype: GGUFValueType) -> tuple[Any, GGUFValueType | None]:
        """(value, element type) of one value of `vtype`."""
        if vtype == V.STRING:
            return self.string(), None
        if vtype != V.ARRAY:
            return self.unpack(_FORMATS[vtype])[0], None
        etype = self.value_type()
        (n,) = self.unpack("<Q")
        if etype == V.STRING:
            return self._strings(n), etype
        if etype == V.ARRAY:
            return [self.value(V.ARRAY)[0] for _ in range(n)], etype
        dtype = _DTYPES[etype]
        if self.pos + n * dtype.itemsize > len(self.buf):
            raise self.truncated()
        # A copy, so a value does not keep the file mapped.
        arr = np.frombuffer(self.buf, dtype, count=n, offset=self.pos).copy()
        self.pos += n * dtype.itemsize
        return arr, etype

    def _strings(self, n: int) -> list[str]:
        # The hot loop (262K tokens): locals only, one unpack and one decode per string.
        buf, pos, unpack = self.buf, self.pos, struct.Struct("<Q").unpack_from
        if pos + 8 * n > len(buf):
            raise self.truncated()
        out = []
        try:
            for _ in range(n):
                (k,) = unpack(buf, pos)
                pos += 8
                out.append(str(buf[pos : pos + k], "utf-8"))  # a slice past the end is short, not an error
                pos += k
        except struct.error:
            raise self.truncated() from None
        except UnicodeDecodeError:
            self.pos = pos
            self._decode(k)  # raises the precise error: truncated or not UTF-8
            raise
        if pos > len(buf):
            raise self.truncated()
        self.pos = pos
        return out

    def header(self) -> tuple[int, int, int]:
        """(version, tensor count, key-value count)."""
        magic = bytes(self.buf[:4])
        if magic != b"GGUF":
            raise self.truncated() if b"GGUF".startswith(magic) else self.error(f"bad magic {magic!r}")
        self.pos = 4
        (version,) = self.unpack("<I")
        if version & 0xFFFF == 0 and version != 0:  # a small version read with the wrong byte order
            raise self.error("big-endian GGUF files are not supported; convert it to little-endian")
        if version not in _VERSIONS:
            raise self.error(f"GGUF version {version} is not supported (only {_VERSIONS})")
        return (version, *self.unpack("<QQ"))

    def fields(self, count: int) -> dict[str, Field]:
        fields = {}
        for _ in range(count):
            key = self.string()
            if key in fields:
                raise self.error(f"duplicate key {key!r}")
            vtype = self.value_type()
            value, etype = self.value(vtype)
            fields[key] = Field(value, vtype, etype)
        return fields

    def tensor_infos(self, count: int) -> list[tuple[str, tuple[int, ...], GGMLQuantizationType, int]]:
        """(name, dims, type, offset in the data section) per tensor."""
        infos, names = [], set()
        for _ in range(count):
            name = self.string()
            if name in names:
                raise self.error(f"duplicate tensor {name!r}")
            names.add(name)
            (rank,) = self.unpack("<I")
            if self.pos + 8 * rank > len(self.buf):
                raise self.truncated()
            dims = self.unpack(f"<{rank}Q")
            raw, offset = self.unpack("<IQ")
            try:
                infos.append((name, dims, Q(raw), offset))
            except ValueError:
                raise self.error(f"tensor {name!r} has unknown GGML type {raw}") from None
        return infos


def _alignment(p: _Parser, fields: dict[str, Field]) -> int:
    field = fields.get("general.alignment")
    if field is None:
        return _DEFAULT_ALIGNMENT
    if field.type != V.UINT32 or field.value <= 0 or field.value & (field.value - 1):
        raise p.error(f"general.alignment must be a power of two stored as UINT32, not {field}")
    return field.value


def _tensor(p: _Parser, mm: np.memmap, data_offset: int, info) -> Tensor:
    """A view of one tensor's bytes, with GGUFReader's dtype and shape."""
    name, dims, qtype, offset = info
    block, type_size = GGML_QUANT_SIZES[qtype]
    shape = tuple(reversed(dims))
    n = int(np.prod(dims, dtype=np.int64))
    if dims and dims[0] % block:
        raise p.error(f"tensor {name!r}: rows of {dims[0]} are not whole {qtype.name} blocks of {block}")
    start = data_offset + offset
    end = start + n // block * type_size
    if end > len(mm):
        raise p.error(f"truncated: tensor {name!r} ends at byte {end}, the file after {len(mm)}")
    raw = mm[start:end]
    dtype = _ELEMENT_DTYPES.get(qtype)
    if dtype is not None:
        return Tensor(name, qtype, dims, start, raw.view(dtype).reshape(shape))
    return Tensor(name, qtype, dims, start, raw.reshape(quant_shape_to_byte_shape(shape, qtype)))


def open_gguf(path: str | os.PathLike) -> GGUFFile:
    """Parse a GGUF file's metadata and map its tensors (read-only; nothing is dequantized)."""
    path = str(path)
    try:
        mm = np.memmap(path, mode="r")
    except ValueError:  # numpy cannot map an empty file
        raise InvalidInput(f"{path}: not a valid GGUF file: it is empty") from None
    p = _Parser(memoryview(mm), path)
    version, n_tensors, n_fields = p.header()
    fields = p.fields(n_fields)
    infos = p.tensor_infos(n_tensors)
    alignment = _alignment(p, fields)
    data_offset = -(-p.pos // alignment) * alignment
    tensors = {info[0]: _tensor(p, mm, data_offset, info) for info in infos}
    return GGUFFile(path, version, alignment, fields, tensors)
