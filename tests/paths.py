"""Repository paths for tests, resolved from this file, so that the tests pass whatever pytest's working
directory is (`cd tests && pytest` included)."""

from pathlib import Path

from align.data_dir import data_dir

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# The quickstart configs name their variants file relative to the repository root (where `align pipeline`
# runs): tests that build a Pipeline pass this override so that it is found from any directory.
VARIANTS_FILE = CONFIGS / "variants" / "gemma3_270m.yaml"
VARIANTS = f"variants={VARIANTS_FILE}"
# The shared benchmark and preference data: $ALIGN_DATA_DIR, else ../shared/data beside the checkout.
DATA = data_dir()
