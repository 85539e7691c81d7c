"""A finished baseline run as a scorer: its model, rebuilt from its ``config.yaml``, with its checkpoint's weights.

:func:`load_scorer` reads a run folder (``results.json``, ``config.yaml``, ``checkpoints/``); :meth:`Scorer.predict`
scores any samples of a dataset root the way the run saw its own test split (its view, input size, margin and
reference image), on the run's task scale. The best-competitor regressors (Table 3) score the overall subset
with the picked runs this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from rich.progress import track
from torch.utils.data import DataLoader

from epaiqa.data.datasets import PAIDataset
from epaiqa.data.schema import PAISample
from epaiqa.errors import ConfigError, DataError
from epaiqa.eval.results import RunRecord, read_record
from epaiqa.runs import register_resolvers

CONFIG = "config.yaml"
#: the model class whose runs :func:`load_scorer` rebuilds (the IQA baselines)
SCORING_MODEL = "epaiqa.models.iqa_module.IQARegressor"


def checkpoint_of(folder: Path, record: RunRecord) -> Path:
    """The run's best checkpoint: the record's path, or the file of that name in ``FOLDER/checkpoints`` (moved runs)."""
    candidates = []
    if record.checkpoint:
        candidates += [Path(record.checkpoint), folder / "checkpoints" / Path(record.checkpoint).name]
    candidates.append(folder / "checkpoints" / "last.ckpt")
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"{folder}: no checkpoint found (looked for {', '.join(str(p) for p in candidates)})")


@dataclass
class Scorer:
    """A trained baseline of a run folder, ready to score samples."""

    folder: Path
    record: RunRecord
    cfg: DictConfig
    model: torch.nn.Module

    def dataset(self, root: str | Path, samples: Sequence[PAISample], task: str) -> PAIDataset:
        """``samples`` as the run's test split showed its samples (``task`` picks the MOS carried along)."""
        data = self.cfg.data
        return PAIDataset(
            root,
            samples,
            task,
            str(data.view),
            int(data.image_size),
            reference=bool(data.reference),
            margin=float(data.get("margin", 0.3)),
        )

    @torch.inference_mode()
    def predict(
        self, root: str | Path, samples: Sequence[PAISample], task: str, batch_size: int = 32
    ) -> dict[str, float]:
        """The run's prediction (on its own task's scale) for each sample, by id."""
        self.model.eval()
        loader = DataLoader(self.dataset(root, samples, task), batch_size=batch_size)
        out: dict[str, float] = {}
        for batch in track(loader, description=f"{self.record.model} scoring {len(loader.dataset)}", transient=True):
            pred = self.model(batch["img"], batch.get("ref")).float().tolist()
            out.update(zip(batch["id"], pred, strict=True))
        return out


def load_scorer(path: str | Path) -> Scorer:
    """The trained model of a baseline run: its folder (best checkpoint) or one of its ``checkpoints/*.ckpt``.

    :class:`DataError` / :class:`ConfigError` name what is missing or of another kind.
    """
    from epaiqa.train import build  # train imports the results record; imported here to keep eval light

    path = Path(path)
    chosen = path if path.is_file() and path.suffix == ".ckpt" else None
    folder = path.parent.parent if chosen is not None else path
    if not folder.is_dir():
        raise DataError(f"{path}: not a run folder or a checkpoint inside one")
    record = read_record(folder)
    config = folder / CONFIG
    if not config.is_file():
        raise DataError(f"{folder}: no {CONFIG} (not a run folder written by run.py)")
    register_resolvers()
    cfg = OmegaConf.load(config)
    assert isinstance(cfg, DictConfig)
    target = OmegaConf.select(cfg, "model._target_")
    if target != SCORING_MODEL:
        raise ConfigError(
            f"{folder}: a run of {target or 'an unknown model'} — only baseline runs ({SCORING_MODEL}) can score here; "
            "bring other models' predictions in with `epaiqa evaluate`"
        )
    model = build(cfg.model)
    path = chosen or checkpoint_of(folder, record)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict(state)
    except (OSError, KeyError, RuntimeError, EOFError) as exc:
        raise DataError(f"{path}: not a loadable checkpoint of this run's model ({exc})") from None
    return Scorer(folder, record, cfg, model)
