"""``epaiqa prepare ROOT``: cleaned ratings into the manifest's ``mos``, then ``splits.json``.

Nothing is written unless all of it would pass :func:`~epaiqa.data.manifest.validate`: the new
manifest lines and splits are built in memory and checked by the same code first. The files they
replace are kept as ``manifest.jsonl.bak`` and ``splits.json.bak``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from epaiqa.data.manifest import check_samples, load_manifest, write_manifest
from epaiqa.data.ratings import CleaningStats, clean_ratings, read_ratings
from epaiqa.data.schema import DIMENSIONS, MANIFEST, RATINGS, SPLITS
from epaiqa.data.splits import check_splits, make_splits, write_splits
from epaiqa.errors import DataError
from epaiqa.io import atomic_write

BACKUP_SUFFIX = ".bak"


def _backup(path: Path) -> Path | None:
    """Copy ``path`` byte for byte to ``path.bak`` (atomically); None if there is nothing to keep."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    return atomic_write(path.with_name(path.name + BACKUP_SUFFIX), lambda fh: fh.write(data))


def prepare(
    root: str | Path,
    seed: int = 0,
    test_fraction: float = 0.2,
    group_by: str = "source",
    check_images: bool = True,
    backup: bool = True,
) -> tuple[CleaningStats, dict[str, dict[str, int]]]:
    """Clean ``ROOT/ratings.csv`` into ``mos`` fields and write ``splits.json``.

    Samples without any rating keep no scores and enter no subset. The new manifest and splits are
    checked before anything is written; with ``backup`` the replaced files are kept beside them
    with a ``.bak`` suffix. Returns the cleaning statistics and the train/test sizes of each subset.

    Raises:
        DataError: the dataset root, manifest or ratings are invalid, or the result would not pass
            validation (then nothing is written).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {'dataset root not found' if not root.exists() else 'is not a directory'}")
    samples = load_manifest(root, check_images=check_images, check_splits=False)  # splits.json is rebuilt
    ratings = read_ratings(root / RATINGS, known_ids={s.id for s in samples})
    mos, stats = clean_ratings(ratings)
    empty = dict.fromkeys(DIMENSIONS)
    samples = [replace(s, mos=mos.get(s.id, empty)) for s in samples]
    splits = make_splits(samples, seed=seed, test_fraction=test_fraction, group_by=group_by)

    problems = [str(p) for p in check_samples(root, samples)]
    by_id = {s.id: s for s in samples}
    problems += [f"{SPLITS}:0: {field}: {message}" for field, message in check_splits(splits, by_id, by_id)]
    if problems:
        raise DataError(f"{root}: prepare would write an invalid dataset, nothing was written:", problems)

    if backup:
        _backup(root / MANIFEST)
        _backup(root / SPLITS)
    write_manifest(root, samples)
    write_splits(root, splits)
    sizes = {t: {p: len(ids) for p, ids in parts.items()} for t, parts in splits["subsets"].items()}
    return stats, sizes
