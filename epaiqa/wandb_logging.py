"""What every run logs to W&B so that runs of different models compare side by side.

One place decides the comparison keys (``epaiqa dashboard`` builds its panels on them):

- ``group``: the sweep (its folder name) for the jobs of a multirun, else the task (``conf/logger/wandb.yaml``);
- ``job_type``: the model family — the baseline's name, ``epaiqa_stage<k>`` / ``qalign_stage<k>`` for the LMM stages;
- config: the same flat keys for every model (:data:`CONFIG_KEYS`, None where a key does not apply), apart from
  the hyper-parameters Lightning logs per model;
- summary: ``<split>/<task>/<edit type or all>/<metric>`` for every correlation table of the results record,
  the same names for every model;
- ``test/predictions``: every test prediction (id, task, edit type, MOS, prediction, absolute error), worst
  first, with a thumbnail (source | edited, the edited region boxed) of the worst ``worst_k`` samples per task.
"""

from __future__ import annotations

import csv
import math
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw

from epaiqa.errors import DataError
from epaiqa.records.results import RunRecord, is_table

#: flat config keys of every run and the config paths they are read from (the first that is set wins)
CONFIG_PATHS: dict[str, tuple[str, ...]] = {
    "view": ("data.view", "data.harmony_view"),
    "reference": ("data.reference",),
    "with_cot": ("data.with_cot",),
    "stage": ("data.stage",),
    "image_size": ("data.image_size",),
    "batch_size": ("data.batch_size",),
    "lr": ("model.lr",),
    "weight_decay": ("model.weight_decay",),
    "loss": ("baseline.loss",),
    "max_epochs": ("trainer.max_epochs",),
    "limit_train_batches": ("trainer.limit_train_batches",),
    "seed": ("seed",),
    "split_seed": ("data.split_seed",),
    "backbone": ("model.backbone.name",),
    "pretrained": ("baseline.pretrained",),
    "pretrained_backbone": ("baseline.pretrained_backbone",),
    "lora": ("model.lora.enabled",),
    "profile": ("run_profile",),
}
#: every flat config key a run logs (the computed ones first)
CONFIG_KEYS: tuple[str, ...] = ("task", "model", "family", "kind", "sweep", "setting", *CONFIG_PATHS)
#: columns of the ``test/predictions`` table
PREDICTION_COLUMNS = ("id", "task", "edit_type", "mos", "pred", "abs_error", "thumbnail")
PREDICTIONS_KEY = "test/predictions"
LMM_STAGES = {"grounding": 1, "scoring": 2, "explain": 3}


class ComparisonWandbLogger(WandbLogger):
    """Lightning's W&B logger plus the settings of the predictions table (``conf/logger/wandb.yaml``).

    Args:
        worst_k: test samples per task with the largest absolute error that get a thumbnail.
        thumbnail_px: the height of a thumbnail (source and edited image side by side).
        **kwargs: Lightning's :class:`~lightning.pytorch.loggers.WandbLogger` arguments (``wandb.init``'s).
    """

    def __init__(self, *, worst_k: int = 8, thumbnail_px: int = 96, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.worst_k, self.thumbnail_px = int(worst_k), int(thumbnail_px)

    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        """The model's and datamodule's own hyper-parameters, under ``hparams.`` (the top level is the flat config)."""
        super().log_hyperparams({"hparams": dict(vars(params) if isinstance(params, Namespace) else params)})


def is_wandb_node(node: Any) -> bool:
    """Whether a logger config node builds a W&B logger."""
    target = str(node.get("_target_", "")) if isinstance(node, DictConfig | dict) else ""
    return target.endswith("WandbLogger")


def _select(cfg: DictConfig, path: str) -> Any:
    value = OmegaConf.select(cfg, path, default=None)
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def _scalar(value: Any) -> Any:
    """A config value W&B's run table can show and compare: numbers, strings, booleans as they are; else text."""
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def model_family(cfg: DictConfig) -> str:
    """The model family of a run (its W&B ``job_type``): the baseline's name, ``<prompts>_stage<k>`` for the LMM."""
    if cfg.get("competitor") is not None:
        return "best_competitor"
    name = _select(cfg, "baseline.name")
    if name:
        return str(name)
    stage = LMM_STAGES.get(str(_select(cfg, "data.stage")))
    if stage is None:
        return str(cfg.get("model_name") or "model")
    prompts = "qalign" if _select(cfg, "data.prompts") == "qalign" else "epaiqa"
    return f"{prompts}_stage{stage}"


def run_task(cfg: DictConfig) -> str | None:
    """The scored task(s) of a run, ``+``-joined in sorted order: ``harmony``, ``completion+overall``."""
    stage = _select(cfg, "data.stage")
    if stage in ("grounding", "explain"):
        return "grounding" if stage == "grounding" else "completion+overall"
    task = _select(cfg, "data.task")
    if task:
        return str(task)
    tasks = _select(cfg, "data.tasks")
    return "+".join(sorted(map(str, tasks))) if tasks else None


def sweep_name() -> str | None:
    """The folder name of the Hydra multirun this job belongs to (None outside one)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(str(hc.sweep.dir)).name if hc.mode == RunMode.MULTIRUN else None


def _overridden(key: str) -> bool:
    from epaiqa.runs import task_overrides

    return any(o.lstrip("+~").startswith(f"logger.wandb.{key}=") for o in task_overrides())


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The flat config every run logs (:data:`CONFIG_KEYS`; None where a key does not apply)."""
    flat: dict[str, Any] = dict.fromkeys(CONFIG_KEYS)
    flat |= {"task": run_task(cfg), "model": cfg.get("model_name"), "family": model_family(cfg)}
    flat |= {"kind": "trained" if cfg.get("train", True) else "zero-shot", "sweep": sweep_name()}
    for key, paths in CONFIG_PATHS.items():
        flat[key] = next((v for v in map(lambda p: _select(cfg, p), paths) if v is not None), None)
    return {k: _scalar(v) for k, v in flat.items()}


def with_comparison_keys(cfg: DictConfig, node: Any) -> Any:
    """A logger config node as built: a W&B one resolved, with group, job_type and the flat config added."""
    if not is_wandb_node(node):
        return node
    data = OmegaConf.to_container(node, resolve=True)
    assert isinstance(data, dict)
    data["config"] = {**flat_config(cfg), **(data.get("config") or {})}
    data["_convert_"] = "all"
    sweep = sweep_name()
    if sweep is not None and not _overridden("group"):
        data["group"] = sweep
    if data.get("job_type") is None:
        data["job_type"] = model_family(cfg)
    return OmegaConf.create(data)


def summary_metrics(records: dict[str, RunRecord]) -> dict[str, Any]:
    """``<split>/<task>/<column>/<metric>`` of every correlation table (and subset) of the records."""
    out: dict[str, Any] = {}
    for task, record in records.items():
        tables = {"test": record.test, "train": record.train, "untrained": record.untrained}
        for name, splits in record.subsets.items():
            tables |= {f"{split}/{name}": metrics for split, metrics in splits.items()}
        for split, metrics in tables.items():
            split, _, subset = split.partition("/")
            prefix = f"{split}/{task}_{subset}" if subset else f"{split}/{task}"
            if is_table(metrics):
                for column, values in metrics.items():  # type: ignore[union-attr]
                    out |= {f"{prefix}/{column}/{k}": v for k, v in values.items()}
            elif metrics:
                out |= {f"{prefix}/{k}": v for k, v in metrics.items() if isinstance(v, int | float | None)}
    return out


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """The scored rows of a run's ``predictions.csv`` (those with a numeric MOS and prediction)."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                mos, pred = float(row.get("mos") or "nan"), float(row.get("pred") or "nan")
            except ValueError:
                continue
            if math.isfinite(mos) and math.isfinite(pred):
                rows.append({**row, "mos": mos, "pred": pred, "abs_error": abs(pred - mos)})
    return rows


def thumbnail(root: Path, sample: Any, height: int) -> Image.Image:
    """Source | edited side by side, ``height`` pixels high, the edited region boxed in red."""
    from epaiqa.data.images import load_rgb

    images = [load_rgb(root / sample.source), load_rgb(root / sample.edited)]
    images = [img.resize((max(1, round(img.width * height / img.height)), height)) for img in images]
    edited = images[1]
    cx, cy, w, h = sample.bbox
    box = ((cx - w / 2) * edited.width, (cy - h / 2) * edited.height)
    box += ((cx + w / 2) * edited.width - 1, (cy + h / 2) * edited.height - 1)
    ImageDraw.Draw(edited).rectangle(box, outline=(255, 0, 0), width=max(1, height // 48))
    sheet = Image.new("RGB", (images[0].width + 2 + edited.width, height), (255, 255, 255))
    sheet.paste(images[0], (0, 0))
    sheet.paste(edited, (images[0].width + 2, 0))
    return sheet


def _worst(rows: list[dict[str, Any]], k: int) -> set[int]:
    """Positions of the first ``k`` rows of each task in ``rows`` (sorted worst first within a task)."""
    seen: dict[Any, int] = {}
    worst = set()
    for i, row in enumerate(rows):
        seen[row.get("task")] = seen.get(row.get("task"), 0) + 1
        if seen[row.get("task")] <= k:
            worst.add(i)
    return worst


def predictions_table(rows: list[dict[str, Any]], root: Path, worst_k: int, height: int) -> Any:
    """The ``test/predictions`` table: worst first per task, thumbnails for each task's worst ``worst_k``."""
    import wandb

    from epaiqa.data.manifest import load_manifest

    rows = sorted(rows, key=lambda r: (r.get("task") or "", -r["abs_error"]))
    worst = _worst(rows, worst_k)
    samples = {}
    if worst:
        try:
            samples = {s.id: s for s in load_manifest(root, check_images=False, check_splits=False)}
        except DataError as exc:
            rank_zero_warn(f"W&B predictions table without thumbnails: {exc}")
    data = []
    for i, row in enumerate(rows):
        image = None
        sample = samples.get(row["id"]) if i in worst else None
        if sample is not None:
            try:
                caption = f"{row['id']}: MOS {row['mos']:.2f}, predicted {row['pred']:.2f}"
                image = wandb.Image(thumbnail(root, sample, height), caption=caption)
            except DataError as exc:
                rank_zero_warn(f"W&B predictions table: no thumbnail for {row['id']}: {exc}")
        data.append(
            [row["id"], row.get("task"), row.get("edit_type"), row["mos"], row["pred"], row["abs_error"], image]
        )
    return wandb.Table(columns=list(PREDICTION_COLUMNS), data=data)


def log_comparison(
    cfg: DictConfig, loggers: list[Any], records: dict[str, RunRecord], out: Path, root: Path | None
) -> None:
    """After a run: the record's keys into the config, the per-edit-type summary, the predictions table."""
    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not records or not wandb_loggers:
        return
    first = next(iter(records.values()))
    final = {"task": "+".join(sorted(records)), "model": first.model, "kind": first.kind}
    final |= {"setting": first.setting.key, "split_seed": first.split_seed}
    summary = summary_metrics(records)
    rows = read_predictions(out / "predictions.csv")
    for logger in wandb_loggers:
        run = logger.experiment
        run.config.update(final, allow_val_change=True)
        run.summary.update(summary)
        if rows and root is not None:
            worst_k, height = getattr(logger, "worst_k", 8), getattr(logger, "thumbnail_px", 96)
            run.log({PREDICTIONS_KEY: predictions_table(rows, root, worst_k, height)})
