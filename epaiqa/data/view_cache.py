"""Decoded, cut and resized views of a root's images, kept on disk so that a sweep's jobs decode each image once.

A view (the edited or source image cut to the ``whole``/``region``/``context`` box, or the centred ``native``
window, resized to ``image_size``) is what :class:`~epaiqa.data.datasets.PAIDataset` makes from a file before
flips and the float conversion. :class:`ViewCache` stores it as uint8 CHW in one memory-mapped file per
(root, data fingerprint, view, size, margin, edited/source), one row per sample of the manifest, so every part
(train, val, test) and every job of a sweep that shows the same view reads the same rows — also across the
processes of a launcher or of data-loader workers.

- **Exact:** a row holds the bytes the decode path makes; the float tensor is the same (tested).
- **Stale rows are not used:** each row keeps the file's size and modification time; a changed image is decoded
  again and its row rewritten. The flag that marks a row filled is written after its pixels and stamp.
- **Bounded:** an entry is created only if it fits in ``max_mb``; older entries (by last use) are removed to make
  room. An entry larger than the whole budget is not cached at all (the decode path runs as before).
- **Never in the dataset root:** entries live in the cache folder (``paths.cache_dir``/views); an unwritable
  folder only costs the decode.
- **A damaged entry is removed, not trusted:** an entry whose files are missing or not of the size it was made
  with (truncated by hand, a disk error) is reported once, as a warning naming the folder; the entry is deleted
  and the job decodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from epaiqa.data.validated import file_stamp

META = "meta.json"
PIXELS = "pixels.u8"
STAMPS = "stamps.i8"


def _file_sizes(n: int, shape: Sequence[int]) -> dict[str, int]:
    """The byte size of an entry's files for ``n`` rows of ``shape`` (pixels uint8; stamps 3 × int64 a row)."""
    return {PIXELS: n * int(np.prod(shape)), STAMPS: n * 3 * 8}


def _entry_bytes(meta: Path) -> int:
    """The size an entry reaches once every row is written (its files are sparse until then)."""
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        return sum(_file_sizes(int(data["n"]), data["shape"]).values())
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class ViewCache:
    """Rows of uint8 views, one per sample id, in a memory-mapped file under ``folder`` (see the module doc)."""

    def __init__(self, folder: Path, ids: Sequence[str], shape: tuple[int, int, int]) -> None:
        self.folder, self.shape = folder, shape
        self.rows = {sid: i for i, sid in enumerate(ids)}
        self._pixels: np.memmap | None = None
        self._stamps: np.memmap | None = None
        self.broken = False

    @classmethod
    def open(
        cls,
        cache_dir: str | Path,
        key: dict[str, Any],
        ids: Sequence[str],
        image_size: int,
        max_mb: float,
    ) -> ViewCache | None:
        """The entry for ``key`` (created, evicting older entries, if needed), or None when it cannot be had."""
        shape = (3, image_size, image_size)
        need = sum(_file_sizes(len(ids), shape).values())
        if max_mb <= 0 or need > max_mb * 2**20:
            return None
        ids_hash = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        meta = {**key, "ids": ids_hash, "n": len(ids), "shape": list(shape)}
        name = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
        base = Path(cache_dir).expanduser()
        folder = base / name
        try:
            if not (folder / META).is_file():
                _make_room(base, need, max_mb * 2**20)
                _create(folder, meta, len(ids), shape)
            os.utime(folder / META)  # last use, for eviction
        except OSError:
            return None
        return cls(folder, ids, shape)

    def _arrays(self) -> tuple[np.memmap, np.memmap] | None:
        """The mapped pixels and stamps (opened lazily: worker processes map their own); None if the entry is bad."""
        if self.broken:
            return None
        if self._pixels is None or self._stamps is None:
            n = len(self.rows)
            try:
                for name, size in _file_sizes(n, self.shape).items():  # as made: numpy would zero-extend a short one
                    if (self.folder / name).stat().st_size != size:
                        raise ValueError(f"{name} is not {size} bytes")
                self._pixels = np.memmap(self.folder / PIXELS, dtype=np.uint8, mode="r+", shape=(n, *self.shape))
                self._stamps = np.memmap(self.folder / STAMPS, dtype=np.int64, mode="r+", shape=(n, 3))
            except (OSError, ValueError) as err:
                self.broken, self._pixels, self._stamps = True, None, None
                warnings.warn(
                    f"view cache entry {self.folder} is damaged ({err}); removed, decoding instead", stacklevel=2
                )
                shutil.rmtree(self.folder, ignore_errors=True)
                return None
        return self._pixels, self._stamps

    def get(self, sid: str, path: Path) -> torch.Tensor | None:
        """The cached view of sample ``sid`` made from ``path``, or None (not cached, or the file changed)."""
        row = self.rows.get(sid)
        stamp = file_stamp(path)
        arrays = None if row is None or stamp is None else self._arrays()
        if arrays is None:
            return None
        pixels, stamps = arrays
        filled, size, mtime = (int(v) for v in stamps[row])
        if filled != 1 or (size, mtime) != stamp:
            return None
        return torch.from_numpy(np.array(pixels[row]))

    def put(self, sid: str, path: Path, view: torch.Tensor) -> None:
        """Store the uint8 CHW view of sample ``sid`` made from ``path``."""
        row = self.rows.get(sid)
        stamp = file_stamp(path)
        arrays = None if row is None or stamp is None or tuple(view.shape) != self.shape else self._arrays()
        if arrays is None:
            return
        pixels, stamps = arrays
        stamps[row, 0] = 0
        pixels[row] = view.numpy()
        stamps[row, 1:] = stamp
        stamps[row, 0] = 1

    def __getstate__(self) -> dict[str, Any]:  # data-loader workers reopen the maps themselves
        return {**self.__dict__, "_pixels": None, "_stamps": None}


def _create(folder: Path, meta: dict[str, Any], n: int, shape: tuple[int, int, int]) -> None:
    """Make an empty entry in a temporary folder and move it into place (another process may win the race)."""
    tmp = folder.with_name(f".{folder.name}-{os.getpid()}-{time.monotonic_ns()}")
    tmp.mkdir(parents=True)
    try:
        for name, size in _file_sizes(n, shape).items():
            with open(tmp / name, "wb") as fh:
                fh.truncate(size)  # sparse: disk is used as rows are written
        (tmp / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _make_room(base: Path, need: int, limit: float) -> None:
    """Remove the least recently used entries until ``need`` more bytes fit in ``limit``."""
    if not base.is_dir():
        return
    entries = []
    for folder in base.iterdir():
        meta = folder / META
        if folder.is_dir() and meta.is_file():
            entries.append((meta.stat().st_mtime, folder, _entry_bytes(meta)))
    used = sum(size for _, _, size in entries)
    for _, folder, size in sorted(entries):
        if used + need <= limit:
            break
        shutil.rmtree(folder, ignore_errors=True)  # a process still reading it keeps its mapping
        used -= size
