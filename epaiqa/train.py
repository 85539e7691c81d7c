"""Train, test and record one run (the logic behind ``run.py``; importable by tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from epaiqa.checkpoint import AtomicCheckpointIO, check_checkpoint_file
from epaiqa.data.base import check_stage
from epaiqa.data.schema import SCORE_RANGES
from epaiqa.errors import ConfigError
from epaiqa.io import atomic_write_csv, atomic_write_text, sweep_stale_temps
from epaiqa.models.task import BaseTask
from epaiqa.precision import choose_precision
from epaiqa.records.calibration import Calibration, fit_calibration, write_calibrations
from epaiqa.records.metrics import TaskResult
from epaiqa.records.results import RunRecord, n_of, print_record, write_record
from epaiqa.reseed import DeterministicEpochs
from epaiqa.runs import build, check_profile, git_commit, record_model_name, run_setting
from epaiqa.scale import check_strategy
from epaiqa.timing import PhaseTimes
from epaiqa.wandb_logging import log_comparison, with_comparison_keys


def open_run(cfg: DictConfig) -> Path:
    """The run's folder, ready: leftovers swept, profile and ``ckpt_path`` checked, ``config.yaml`` written, seeded."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(out, recursive=True)  # leftovers of a killed run resumed into this folder
    check_profile(cfg)
    _resume_path(cfg)  # a damaged ckpt_path is refused before anything in the run folder is written
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)
    return out


def train(cfg: DictConfig) -> dict[str, RunRecord]:
    """Train and test one model; returns its results records per task (also written as ``results.json``)."""
    if cfg.get("competitor") is not None:
        raise ConfigError(
            "experiment=best_competitor fits a regressor, not a model: run it through epaiqa.jobs.run_job"
        )
    times = PhaseTimes()
    out = open_run(cfg)
    with times.phase("setup_data"):
        datamodule = build(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")  # validates the whole dataset root before any training
    with times.phase("setup_model"):
        check_strategy(cfg.trainer.get("strategy"))  # before a large model is loaded
        model = build(cfg.model)
        check_stage(datamodule, model)
        callbacks = [build(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
        callbacks += [DeterministicEpochs(int(cfg.seed)), times]
        loggers = [build(with_comparison_keys(cfg, lg)) for lg in (cfg.get("logger") or {}).values() if lg is not None]
        precision = choose_precision(cfg.trainer.get("precision"), cfg.trainer.get("accelerator"))
        trainer: L.Trainer = build(
            cfg.trainer, callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()], precision=precision
        )

    ok = False
    try:
        records = _fit_test_record(cfg, out, datamodule, model, trainer, times)
        log_comparison(cfg, trainer.loggers, records, out, datamodule.dataset_root)  # W&B: the comparison keys
        ok = True
        return records
    finally:  # one W&B run per train() call: sweeps in one process, tests, notebooks
        finish_wandb(loggers, ok)


def finish_wandb(loggers: list[Any], ok: bool) -> None:
    """Close the W&B run of this train() call, if a W&B logger opened one."""
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=0 if ok else 1)


def _resume_path(cfg: DictConfig) -> str | None:
    path = cfg.get("ckpt_path")
    if path is None:
        return None
    if not Path(path).expanduser().is_file():
        raise ConfigError(f"ckpt_path: {path} does not exist (resume from <run>/checkpoints/last.ckpt)")
    check_checkpoint_file(Path(path).expanduser(), "ckpt_path")
    return str(Path(path).expanduser())


def _as_saved(results: dict[str, TaskResult]) -> dict[str, dict[str, Any]]:
    return {task: {"metrics": r.metrics, "subsets": r.subsets} for task, r in results.items()}


def _fit_test_record(
    cfg: DictConfig, out: Path, datamodule: Any, model: BaseTask, trainer: L.Trainer, times: PhaseTimes
) -> dict[str, RunRecord]:
    """Untrained test (optional), fit, test the best checkpoint (and the training split), write the records."""
    resume = _resume_path(cfg)
    trained = bool(cfg.get("train", True))
    if cfg.get("eval_untrained") and not resume:
        with model.evaluating("untrained"):
            trainer.test(model, datamodule=datamodule, verbose=False)
        model.untrained = _as_saved(model.task_results())  # saved in every checkpoint: a resume reports it

    best = None
    if trained:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        if checkpoint is not None:
            best = checkpoint.best_model_path or checkpoint.last_model_path or None
    trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    test = model.task_results()
    on_train: dict[str, TaskResult] = {}
    loader = datamodule.train_eval_dataloader() if cfg.get("eval_train", True) and trained else None
    if loader is not None and len(loader.dataset):  # the best weights are loaded by the test above
        with model.evaluating("train"):
            trainer.test(model, dataloaders=loader, verbose=False)
        on_train = model.task_results()
    calibrations = _calibrate(model, trainer, datamodule, test)
    if not trainer.is_global_zero:  # every process has the gathered results; one writes them
        return {}
    if calibrations:
        write_calibrations(out, calibrations)  # before the record: a record names a complete folder
    return write_run(cfg, out, datamodule, model, trainer, test, on_train, best, trained, times.record())


def _calibrate(model: BaseTask, trainer: L.Trainer, datamodule: Any, test: dict[str, TaskResult]) -> dict:
    """Each scored task's map from raw score to the rating scale (epaiqa/records/calibration.py).

    A baseline's unbounded regression: a logistic fitted on its best weights' validation predictions (one more
    pass over the validation split); an EPAIQA stage's Q-Align expectation is on 1..5 already (identity).
    """
    tasks = [t for t, r in test.items() if t in SCORE_RANGES and any("pred" in row for row in r.rows)]
    if type(model).STAGE is not None:
        return {
            t: Calibration(t, *map(float, SCORE_RANGES[t]), "identity", "Q-Align expectation on 1-5") for t in tasks
        }
    loader = datamodule.val_dataloader()
    if not tasks or not loader or not len(loader.dataset):
        return {t: fit_calibration([], [], t, *SCORE_RANGES[t], "no validation split") for t in tasks}
    with model.evaluating("val_calibration"):
        trainer.test(model, dataloaders=loader, verbose=False)
    on_val = model.task_results()
    out = {}
    for task in tasks:
        rows = [r for r in (on_val.get(task).rows if task in on_val else []) if r.get("mos") is not None]
        raw, mos = [float(r["pred"]) for r in rows], [float(r["mos"]) for r in rows]
        out[task] = fit_calibration(raw, mos, task, *SCORE_RANGES[task], "validation split")
    return out


def write_run(
    cfg: DictConfig,
    out: Path,
    datamodule: Any,
    model: BaseTask,
    trainer: L.Trainer,
    test: dict[str, TaskResult],
    on_train: dict[str, TaskResult],
    best: str | None,
    trained: bool,
    timing: dict[str, float] | None = None,
) -> dict[str, RunRecord]:
    """One results record per task (in ``OUT/<task>/`` when a run scores several), predictions, explanations."""
    untrained = model.untrained or {}
    lineage = model.trained_lineage() if trained else list(model.lineage)
    data = {"root": str(datamodule.dataset_root)}
    data |= {k: getattr(datamodule, k) for k in ("view", "reference", "with_cot") if hasattr(datamodule, k)}
    if getattr(datamodule, "level_spans", None):  # levels.range=observed: the MOS span each task's words bin
        data["level_spans"] = {t: list(span) for t, span in datamodule.level_spans.items()}
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
    if trained and checkpoint is not None and checkpoint.best_model_score is not None:
        data["best_val"] = {"metric": checkpoint.monitor, "value": float(checkpoint.best_model_score)}
    common = {
        "model": record_model_name(str(cfg.get("model_name") or type(model).__name__), type(model).STAGE, lineage),
        "kind": "trained" if trained else "zero-shot",
        "seed": int(cfg.seed),
        "split_seed": datamodule.split_seed,
        "setting": run_setting(cfg),
        "git_commit": git_commit(),
        "data_fingerprint": datamodule.fingerprint(),
        "lineage": lineage,
        "data": data,
        "checkpoint": _within(best, out),
        "epochs": trainer.current_epoch if trained else 0,
        "precision": str(trainer.precision),
        "timing": timing,
    }
    records = {}
    for task, result in test.items():
        before, fitted = untrained.get(task) or {}, on_train.get(task)
        subsets = {
            name: {
                "test": metrics,
                "train": fitted.subsets.get(name) if fitted else None,
                "untrained": (before.get("subsets") or {}).get(name),
            }
            for name, metrics in result.subsets.items()
        }
        view = datamodule.task_view(task) if hasattr(datamodule, "task_view") else None
        record = RunRecord(
            task=task,
            test=result.metrics,
            n=n_of(result.metrics),
            train=fitted.metrics if fitted else None,
            untrained=before.get("metrics"),
            val=(getattr(model, "val_results", None) or {}).get(task),
            subsets=subsets,
            **(common | {"data": data | {"view": view}} if view else common),
        )
        write_record(out if len(test) == 1 else out / task, record)
        print_record(record)
        records[task] = record
    rows = [row for result in test.values() for row in result.predictions]
    atomic_write_csv(out / "predictions.csv", rows)
    generations = [row for result in test.values() for row in result.generations]
    if generations:
        lines = (json.dumps(row, ensure_ascii=False) for row in generations)
        atomic_write_text(out / "explanations.jsonl", "".join(line + "\n" for line in lines))
        log_explanations(trainer, generations)
    return records


EXPLANATION_COLUMNS = (
    "id",
    "edit_type",
    "completion",
    "completion_pred",
    "mos",
    "pred",
    "prompt",
    "explanation",
    "reference_answer",
)


def log_explanations(trainer: L.Trainer, rows: list[dict[str, Any]]) -> None:
    """Stage-3 explanations as a W&B table (``test/explanations``), when a W&B logger is in use."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            data = [[row.get(c) for c in EXPLANATION_COLUMNS] for row in rows]
            logger.log_table("test/explanations", columns=list(EXPLANATION_COLUMNS), data=data)


def _within(path: str | None, out: Path) -> str | None:
    """``path`` relative to the run folder when it lies inside it (a copied or moved run finds its own weights)."""
    if not path:
        return None
    resolved, root = Path(path).resolve(), out.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)
