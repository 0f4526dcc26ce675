"""The three data roles, and how `--data` becomes them (DECISIONS.md "Data roles").

- **train** fits weights.
- **val** makes every decision: best epoch, PTQ vs QAD, fallback layers, any automatic choice.
- **test** is evaluated once per final artifact and is the only figure reported and judged.

Layouts of `--data DIR`:
- `train/ val/ test/`: the three folders as given.
- `train/` + `test/`, or `train/` + `val/`: the folder beside train/ is the test role; val is carved out of
  train/ (`val_fraction` of each class, stratified, seeded by `split_seed`).
- one ImageFolder tree (and the embedded digits): `test_fraction`, then `val_fraction` of each class are
  carved out of the whole tree, the rest is train. Each class is shuffled once by the seed and test is taken
  first, so the test images depend only on the seed and `test_fraction`: changing `--val-fraction` never
  moves an image into or out of the reported split.

This module imports numpy only, so the reports (base package) can describe the roles too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import UsageError

ROLES = ("train", "val", "test")
DECIDES, REPORTS = "val", "test"


def pct(f: float) -> str:
    return f"{f * 100:g}%"


def folder_layout(root: Path) -> dict[str, Path]:
    """Role -> the folder given for it; {} for a single tree. A lone val/ beside train/ is the test role."""
    train = root / "train"
    given = {n: root / n for n in ("val", "test") if (root / n).is_dir()}
    if not train.is_dir():
        return {}
    if not given:
        raise UsageError(f"{root} has train/ but no val/ or test/ folder: add one, or point --data at a single tree")
    if len(given) == 2:
        return {"train": train, **given}
    return {"train": train, "test": next(iter(given.values()))}


def check_same_classes(indexes: dict[str, object]) -> None:
    """Every given folder must hold the same class folders (indexes: role -> FolderIndex)."""
    (first_role, first), *rest = indexes.items()
    for _, other in rest:
        if other.class_names != first.class_names:
            only_a = sorted(set(first.class_names) - set(other.class_names))
            only_b = sorted(set(other.class_names) - set(first.class_names))
            diff = "; ".join([f"only in {first.root.name}/: {', '.join(only_a)}"] * bool(only_a)
                             + [f"only in {other.root.name}/: {', '.join(only_b)}"] * bool(only_b))
            raise UsageError(f"{first.root} and {other.root} have different class folders ({diff}): make them the same")


def _counts(n: int, fractions: list[float]) -> list[int]:
    """Images per carved role for a class of n (each at least 1), then the rest for train."""
    taken = [max(1, int(round(n * f))) for f in fractions]
    return taken + [n - sum(taken)]


def _needed(fractions: list[float]) -> int:
    n = len(fractions) + 1
    while min(_counts(n, fractions)) < 1:
        n += 1
    return n


def carve(labels: np.ndarray, fractions: dict[str, float], seed: int, class_names: list[str],
          where: str) -> dict[str, np.ndarray]:
    """Stratified, seeded split of indices into the roles of `fractions` (in that order) and 'train' (the rest).

    Every class must give every role at least one image; otherwise a UsageError names the class and counts.
    """
    total = sum(fractions.values())
    if total >= 1:
        flags = " + ".join(f"--{r}-fraction {f:g}" for r, f in fractions.items())
        raise UsageError(f"{flags} leave no training images in {where}: make their sum below 1")
    fracs = list(fractions.values())
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {r: [] for r in (*fractions, "train")}
    for c in range(len(class_names)):
        idx = np.flatnonzero(labels == c)
        counts = _counts(len(idx), fracs)
        if min(counts) < 1:
            parts = ", ".join(f"{r} ({pct(f)})" for r, f in fractions.items())
            raise UsageError(
                f"class '{class_names[c]}' has {len(idx)} image(s) in {where}: carving {parts} and keeping train "
                f"needs at least {_needed(fracs)} images per class; add images to it or remove the class folder")
        rng.shuffle(idx)
        start = 0
        for role, k in zip(out, counts):
            out[role].append(idx[start:start + k])
            start += k
    return {r: np.sort(np.concatenate(parts)) for r, parts in out.items()}


def role_facts(images: int, origin: str) -> dict[str, object]:
    return {"images": images, "origin": origin}


def roles_line(splits: dict[str, dict]) -> str:
    """'decisions: val (540 images, carved 10% of train/ ...); reported: test (1,797 images, given test/)'."""
    def one(role: str) -> str:
        s = splits.get(role) or {}
        return f"{role} ({s.get('images', 0):,} images, {s.get('origin', '?')})"

    if not splits:
        return ""
    train = splits.get("train") or {}
    return (f"decisions: {one(DECIDES)}; reported: {one(REPORTS)}; "
            f"training: {train.get('images', 0):,} images ({train.get('origin', '?')})")
