"""``epaiqa prepare ROOT``: cleaned ratings into the manifest's ``mos``, then ``splits.json``.

Nothing is written unless all of it would pass :func:`~epaiqa.data.manifest.validate`: the new
manifest lines and splits are built in memory and checked by the same code first. The files they
replace are kept as numbered backups (``manifest.jsonl.bak``, ``.bak2``, … with the original's permission bits).
An existing split is kept unless a re-split is asked for: the test split never changes silently.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

from epaiqa.data.manifest import check_samples, load_manifest, write_manifest
from epaiqa.data.ratings import CleaningStats, clean_ratings, read_ratings
from epaiqa.data.schema import DIMENSIONS, MANIFEST, RATINGS, SPLITS
from epaiqa.data.splits import check_splits, make_splits, write_splits
from epaiqa.errors import ConfigError, DataError
from epaiqa.io import atomic_write

BACKUP_SUFFIX = ".bak"
#: the split parameters a fresh ``splits.json`` gets when none are given
SPLIT_DEFAULTS: dict[str, Any] = {"seed": 0, "test_fraction": 0.2, "group_by": "source"}


def backup_path(path: Path) -> Path:
    """The first free backup name of ``path``: ``NAME.bak``, then ``NAME.bak2``, ``NAME.bak3`` and so on."""
    candidate, n = path.with_name(path.name + BACKUP_SUFFIX), 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.name}{BACKUP_SUFFIX}{n}")
    return candidate


def keep_backup(path: Path) -> Path | None:
    """Copy ``path`` byte for byte, with its permission bits, to a new numbered backup; None if there is none."""
    if not path.is_file():
        return None
    data, mode = path.read_bytes(), stat.S_IMODE(path.stat().st_mode)
    target = atomic_write(backup_path(path), lambda fh: fh.write(data))
    os.chmod(target, mode)
    return target


def split_parameters(root: Path, given: dict[str, Any], resplit: bool) -> tuple[dict[str, Any], bool]:
    """The seed, test fraction and grouping to split with, and whether they are the existing ``splits.json``'s.

    Without ``resplit`` an existing split's parameters are kept (the same samples give the same split); a given
    value that differs from them is refused, so a test split never changes without being asked.
    """
    try:
        existing = json.loads((root / SPLITS).read_text())
        previous = {k: existing[k] for k in SPLIT_DEFAULTS}
    except (OSError, ValueError, TypeError, KeyError):  # none, or unreadable: it is rebuilt
        previous = None
    if previous is None or resplit:
        return {k: SPLIT_DEFAULTS[k] if given.get(k) is None else given[k] for k in SPLIT_DEFAULTS}, False
    for key, value in given.items():
        if value is not None and value != previous[key]:
            raise ConfigError(
                f"{root / SPLITS} was made with {key.replace('_', ' ')} {previous[key]}, not {value}: "
                "pass --resplit (resplit=True) to split again and change the test split"
            )
    return previous, True


def prepare(
    root: str | Path,
    seed: int | None = None,
    test_fraction: float | None = None,
    group_by: str | None = None,
    check_images: bool = True,
    backup: bool = True,
    resplit: bool = False,
) -> tuple[CleaningStats, dict[str, dict[str, int]]]:
    """Clean ``ROOT/ratings.csv`` into ``mos`` fields and write ``splits.json``.

    Samples without any rating keep no scores and enter no subset. The split keeps an existing ``splits.json``'s
    seed, test fraction and grouping unless ``resplit`` (:func:`split_parameters`); a new one takes the given
    values, else :data:`SPLIT_DEFAULTS`. The new manifest and splits are checked before anything is written; with
    ``backup`` the replaced files are kept beside them as numbered ``.bak`` copies (:func:`backup_path`). Returns
    the cleaning statistics and the train/test sizes of each subset.

    Raises:
        DataError: the dataset root, manifest or ratings are invalid, or the result would not pass
            validation (then nothing is written).
        ConfigError: a given split parameter differs from the existing split's, without ``resplit``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {'dataset root not found' if not root.exists() else 'is not a directory'}")
    split_parameters(root, {"seed": seed, "test_fraction": test_fraction, "group_by": group_by}, resplit)
    samples = load_manifest(root, check_images=check_images, check_splits=False)  # splits.json is rebuilt
    ratings = read_ratings(root / RATINGS, known_ids={s.id for s in samples})
    mos, stats = clean_ratings(ratings)
    empty = dict.fromkeys(DIMENSIONS)
    samples = [replace(s, mos=mos.get(s.id, empty)) for s in samples]
    given = {"seed": seed, "test_fraction": test_fraction, "group_by": group_by}
    parameters, _ = split_parameters(root, given, resplit)
    splits = make_splits(samples, **parameters)

    problems = [str(p) for p in check_samples(root, samples)]
    by_id = {s.id: s for s in samples}
    problems += [f"{SPLITS}:0: {field}: {message}" for field, message in check_splits(splits, by_id, by_id)]
    if problems:
        raise DataError(f"{root}: prepare would write an invalid dataset, nothing was written:", problems)

    for target in (root / MANIFEST, root / SPLITS):
        if target.exists() and not target.is_file():
            raise DataError(f"{target}: is not a file and cannot be replaced; nothing was written")
    if backup:
        keep_backup(root / MANIFEST)
        keep_backup(root / SPLITS)
    write_manifest(root, samples)
    write_splits(root, splits)
    sizes = {t: {p: len(ids) for p, ids in parts.items()} for t, parts in splits["subsets"].items()}
    return stats, sizes
