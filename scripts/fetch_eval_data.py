"""Put the eval files of hedging, refusal and attribution into the data directory ($ALIGN_DATA_DIR),
downloaded from the authors' GitHub repositories at the commits this project's data directory was
made from, so that a CI runner without it gets the same bytes (and the same `data.sha256` in the
results, comparable with a baseline made from the data directory):

    ALIGN_DATA_DIR=data python scripts/fetch_eval_data.py attribution [hedging refusal]

BEGIN (attribution) has no copy on the hub, so this is its only fallback; hedging and refusal also
read a hub copy when their file is absent (safety_evals.api.HUB_FALLBACK, docs/ci_example.md), whose
rows hash differently. Each file is checked against its sha256 before it takes its place; a file
already there with the right hash is not downloaded again. Prints each file's path.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
SELFAWARE = ("yinzhangyue/SelfAware", "f0bad1ff77bd42fc4eb2360281ed646c7bb7bd0c")
XSTEST = ("paul-rottger/exaggerated-safety", "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d")
BEGIN = ("google/BEGIN-dataset", "6e65f0d5a1ed1b9574643a7640ff1678d4e979b5")

# suite -> ((repo, commit), path in the repository, path under the data directory, sha256)
FILES: dict[str, tuple[tuple[tuple[str, str], str, str, str], ...]] = {
    "hedging": (
        (
            SELFAWARE,
            "data/SelfAware.json",
            "selfaware/SelfAware.json",
            "32929585ffdd4048f35f7f167720722eb8ddcf59908ffc958da2f84ea634dc54",
        ),
    ),
    "refusal": (
        (
            XSTEST,
            "xstest_prompts.csv",
            "xstest/xstest_prompts.csv",
            "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a",
        ),
    ),
    "attribution": tuple(
        (BEGIN, path, f"attribution/begin/{path}", sha)
        for path, sha in (
            ("cmu-dog/begin_dev_cmu.tsv", "9482294df23cf08a976773ca73203b84f7178534ecab1a206eaade365e97071c"),
            (
                "topicalchat/begin_dev_tc.tsv",
                "d799a8cb3635de41b7f284dcfc872544ddeadcbae0c2ffd684270cce671f7711",
            ),
            ("wow/begin_dev_wow.tsv", "2ebfc95a1ff267e12dcce3250da4d158e1811c62e9e1a0d56f110efc9ace0178"),
            ("wow/begin_test_wow.tsv", "d5c106a42042c3abd481563f1157e07c95c107dbcdf67f23564d874e8a4d6e7e"),
        )
    ),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(suite: str, download=None) -> list[Path]:
    """The data-directory files of `suite`, each downloaded first unless present with its sha256
    (`download(url, path)`: urllib's urlretrieve unless given). A download with another hash raises
    and leaves nothing in place."""
    from align.data_dir import data_dir

    if download is None:
        from urllib.request import urlretrieve as download
    paths = []
    for (repo, commit), upstream, local, sha in FILES[suite]:
        path = data_dir() / local
        if not (path.exists() and _sha256(path) == sha):
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            url = RAW.format(repo=repo, commit=commit, path=upstream)
            download(url, str(part))
            if (got := _sha256(part)) != sha:
                part.unlink()
                raise RuntimeError(f"{url}: sha256 {got}, expected {sha}")
            os.replace(part, path)  # only a verified file ever sits where the suite reads
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("suites", nargs="+", choices=sorted(FILES))
    for suite in parser.parse_args().suites:
        for path in fetch(suite):
            print(path)


if __name__ == "__main__":
    main()
