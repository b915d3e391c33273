"""The judge protocol and the shipped judges: a frozen backbone's features + a fitted head, on disk.

    judge = load_judge("truth")
    judge.classify([{"question": "...", "answer": "..."}])   # ["true"] or ["false"]
    judge.identity()   # {"name": "truth", "sha256": ...}: recorded beside every judged metric

A shipped judge is two small files in `artifacts/`: ROLE.npz (the head) and ROLE.json (its card:
backbone, feature recipe, training data and split, held-out figures). Loading reads them and
nothing else: no network and no training; the backbone runs on first use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from align.errors import InvalidInput, MissingInput
from safety_evals.judges.data import check_fields
from safety_evals.judges.features import REFERENCES, FeatureStore, Recipe
from safety_evals.judges.head import Head
from safety_evals.judges.references import reference_matrix
from safety_evals.judges.trees import TreeHead
from safety_evals.judges.specs import SPECS, JudgeSpec

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

# role -> artifact name: the one table of shipped judges
SHIPPED: dict[str, str] = {role: role for role in ("refusal", "attribution", "hedge")}
# TruthfulQA's two judges compare with its reference answers: the frozen 270M backbone misses the
# truth target (0.73 vs 0.85) and calls "No." to any question informative (docs/judges.md)
SHIPPED |= {"truth": "truth-references", "info": "info-references"}

HEADS = {"logistic": Head, "trees": TreeHead}


@runtime_checkable
class Judge(Protocol):
    role: str
    labels: tuple[str, ...]

    def identity(self) -> dict[str, str]:
        """{"name", "sha256"}: which judge, and a hash of everything that decides its verdicts."""
        ...

    def predict_proba(self, rows: Sequence[Mapping[str, str]]) -> np.ndarray:
        """[n, len(labels)] probabilities, rows in order."""
        ...

    def classify(self, rows: Sequence[Mapping[str, str]]) -> list[str]:
        """The most probable label of each row."""
        ...


def content_hash(head: Head | TreeHead, recipe: Recipe, spec: JudgeSpec) -> str:
    """sha256 over the head's arrays, the feature recipe and the labels: equal hashes, equal verdicts."""
    h = hashlib.sha256()
    what = {"recipe": recipe.key(), "labels": spec.labels, "role": spec.role}
    if spec.version > 1:  # a version-1 judge hashes as it always did
        what["version"] = spec.version
    h.update(json.dumps(what).encode())
    for name, arr in sorted(stored_arrays(head).items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def head_kind(head: Head | TreeHead) -> str:
    return next(k for k, cls in HEADS.items() if isinstance(head, cls))


def stored_arrays(head: Head | TreeHead) -> dict[str, np.ndarray]:
    """The head's arrays as the .npz keeps them: a logistic head in float32 (its precision is
    irrelevant); trees exactly (a float32 threshold could send a row down the other branch)."""
    arrays = head.arrays()
    if isinstance(head, Head):
        return {k: v.astype(np.float32) for k, v in arrays.items()}
    return arrays


class ProbeJudge:
    """Features of a row (a frozen backbone's, or the reference comparison) through a fitted head."""

    def __init__(self, spec: JudgeSpec, head: Head | TreeHead, recipe: Recipe, name: str | None = None):
        self.spec, self.head, self.recipe = spec, head, recipe
        self.role, self.labels = spec.role, spec.labels
        self.name = name or spec.role
        self._features = FeatureStore(recipe)

    def identity(self) -> dict[str, str]:
        return {"name": self.name, "sha256": content_hash(self.head, self.recipe, self.spec)}

    def features(self, rows: Sequence[Mapping[str, str]]) -> np.ndarray:
        check_fields(rows, self.spec.fields_for(self.recipe.backbone), self.role)
        if self.recipe.backbone == REFERENCES:
            return reference_matrix(rows)
        return self._features([self.spec.render(r) for r in rows])

    def predict_proba(self, rows: Sequence[Mapping[str, str]]) -> np.ndarray:
        if not rows:
            return np.zeros((0, len(self.labels)))
        return self.spec.decide(rows, self.head.proba(self.features(rows)))

    def classify(self, rows: Sequence[Mapping[str, str]]) -> list[str]:
        return [self.labels[k] for k in self.predict_proba(rows).argmax(-1)]


def save_judge(judge: ProbeJudge, card: dict, directory: Path = ARTIFACTS) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    npz, js = directory / f"{judge.name}.npz", directory / f"{judge.name}.json"
    np.savez_compressed(npz, **stored_arrays(judge.head))
    full = {**card, "head_kind": head_kind(judge.head), "identity": judge.identity(),
            "recipe": json.loads(judge.recipe.key())}  # fmt: skip
    js.write_text(json.dumps(full, indent=1) + "\n")
    return npz, js


def read_judge(name: str, role: str, directory: Path = ARTIFACTS) -> ProbeJudge:
    npz, js = directory / f"{name}.npz", directory / f"{name}.json"
    if not npz.is_file() or not js.is_file():
        raise MissingInput(f"{npz}: judge {name!r} not built; run `align judges build {role}`")
    card = json.loads(js.read_text())
    cls = HEADS[card.get("head_kind", "logistic")]
    with np.load(npz) as z:
        head = cls(**{k: z[k] for k in z.files})
        if cls is Head:
            head = Head(**{k: v.astype(np.float64) for k, v in head.arrays().items()})
    recipe = Recipe(**{**card["recipe"], "layers": tuple(card["recipe"]["layers"])})
    return ProbeJudge(SPECS[role], head, recipe, name=name)


def load_judge(role: str) -> Judge:
    """The shipped judge for `role` (truth, info, refusal, attribution, hedge), read from artifacts/."""
    if role not in SHIPPED:
        raise InvalidInput(f"judge role {role!r}: expected one of {sorted(SHIPPED)}")
    return read_judge(SHIPPED[role], role)


def read_card(role: str) -> dict:
    return json.loads((ARTIFACTS / f"{SHIPPED[role]}.json").read_text())
