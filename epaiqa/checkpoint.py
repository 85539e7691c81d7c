"""Checkpoints a run can trust: atomic writes, and the best checkpoint kept across a resume in another folder."""

from __future__ import annotations

import os
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from epaiqa.errors import DataError
from epaiqa.io import atomic_write, temp_path

#: ModelCheckpoint state entries that name checkpoint files
_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def check_checkpoint_file(path: Path, what: str) -> None:
    """Refuse, in one line, a checkpoint that is not a complete torch file (truncated by a kill or a copy).

    ``torch.save`` writes a zip archive whose directory sits at its end: a cut file has none. Every member's
    CRC is checked too (one read of the file), so damage inside it is found before Lightning unpickles it.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{what}: {path} is not a complete checkpoint ({exc})") from None
    if bad is not None:
        raise DataError(f"{what}: {path} is damaged (its part {bad} fails its checksum)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint I/O, writing to a temporary file renamed into place.

    The temporary file is named by :func:`epaiqa.io.temp_path` (hidden, with the writer's pid), so Lightning's
    listing of ``*.ckpt`` files never sees it, and :func:`epaiqa.io.sweep_stale_temps` removes it after a kill.
    Loading and removal are Lightning's own.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_write(path, lambda fh: torch.save(checkpoint, fh))


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose best (and top-k) survive a resume whose folder differs from the checkpoint's.

    Lightning forgets the best score when ``dirpath`` changed (a run folder copied or moved, or a resume into
    another ``hydra.run.dir``), so the first epoch after the resume became "best" and was the one tested. Here
    the state is carried over: each checkpoint file it names is taken from this run's ``dirpath`` when a file of
    that name is there (a copied folder), else copied in from where it was (the original folder is left as it
    is); a file found nowhere is dropped from the state with a warning. With ``save_on_exception`` (the
    ``last`` checkpoint: a SIGTERM or a crash mid-epoch) it saves while fitting only.
    """

    def _should_save_on_exception(self, trainer: pl.Trainer) -> bool:
        """``save_on_exception`` while fitting only (a test that fails must not overwrite ``last.ckpt``)."""
        return trainer.state.fn == TrainerFn.FITTING and super()._should_save_on_exception(trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if self.dirpath is not None and old is not None and old != self.dirpath:
            state_dict = self._relocated(state_dict, Path(self.dirpath))
        super().load_state_dict(state_dict)

    def _relocated(self, state: dict[str, Any], here: Path) -> dict[str, Any]:
        state = dict(state, dirpath=str(here))
        for key in _PATH_KEYS:
            if state.get(key):
                state[key] = _bring(Path(state[key]), here) or ""
        kept: dict[str, Any] = {}
        for path, score in (state.get("best_k_models") or {}).items():
            moved = _bring(Path(path), here)
            if moved:
                kept[moved] = score
        state["best_k_models"] = kept
        if not state.get("best_model_path"):
            state["best_model_score"] = None
        return state


def _bring(path: Path, here: Path) -> str | None:
    """``here/<name>`` holding the file ``path`` names (copied in when only the original exists), or None."""
    target = here / path.name
    if target.is_file():
        return str(target)
    if not path.is_file():
        warnings.warn(f"checkpoint {path} of the resumed run is gone: the best restarts without it", stacklevel=2)
        return None
    here.mkdir(parents=True, exist_ok=True)
    temp = temp_path(target)
    try:
        os.link(path, temp)  # same file system: no copy
    except OSError:
        shutil.copyfile(path, temp)
    os.replace(temp, target)
    return str(target)
