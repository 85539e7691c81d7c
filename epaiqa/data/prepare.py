"""``epaiqa prepare ROOT``: cleaned ratings into the manifest's ``mos``, then ``splits.json``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from epaiqa.data.manifest import load_manifest, write_manifest
from epaiqa.data.ratings import CleaningStats, clean_ratings, read_ratings
from epaiqa.data.schema import DIMENSIONS, RATINGS
from epaiqa.data.splits import make_splits, write_splits


def prepare(
    root: str | Path,
    seed: int = 0,
    test_fraction: float = 0.2,
    group_by: str = "source",
    check_images: bool = True,
) -> tuple[CleaningStats, dict[str, dict[str, int]]]:
    """Clean ``ROOT/ratings.csv`` into ``mos`` fields and write ``splits.json``.

    Samples without any rating keep no scores and enter no subset. Returns the cleaning statistics
    and the train/test sizes of each subset.
    """
    root = Path(root)
    samples = load_manifest(root, check_images=check_images)
    ratings = read_ratings(root / RATINGS, known_ids={s.id for s in samples})
    mos, stats = clean_ratings(ratings)
    empty = dict.fromkeys(DIMENSIONS)
    samples = [replace(s, mos=mos.get(s.id, empty)) for s in samples]
    write_manifest(root, samples)
    splits = make_splits(samples, seed=seed, test_fraction=test_fraction, group_by=group_by)
    write_splits(root, splits)
    sizes = {t: {p: len(ids) for p, ids in parts.items()} for t, parts in splits["subsets"].items()}
    return stats, sizes
