"""Download Detoxify's classifier weights where the toxicity suite looks for them (the torch hub cache),
so that a CI job fetches them in a step of its own, cacheable, instead of during the eval:

    python scripts/fetch_detoxify.py [--model original]     # prints the file; no-op when present
"""

from __future__ import annotations

import argparse
from pathlib import Path


def fetch(model_type: str = "original", download=None) -> Path:
    """The checkpoint file of `model_type`, downloaded first when absent (`download(url, path)`:
    torch.hub.download_url_to_file unless given)."""
    from safety_evals.suites.toxicity import default_checkpoint

    path, url = default_checkpoint(model_type)
    if not path.exists():
        if download is None:
            from torch.hub import download_url_to_file as download
        path.parent.mkdir(parents=True, exist_ok=True)
        download(url, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="original", help="Detoxify model type (original, unbiased, ...)")
    print(fetch(parser.parse_args().model))


if __name__ == "__main__":
    main()
