"""Train, test and record one run (the logic behind ``run.py``; importable by tests)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from epaiqa.checkpoint import AtomicCheckpointIO
from epaiqa.errors import ConfigError, EPAIQAError
from epaiqa.eval.results import print_results, write_results
from epaiqa.io import atomic_write_json, atomic_write_text
from epaiqa.scale import check_strategy


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that surfaces the project's own errors instead of Hydra's wrapper."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, EPAIQAError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, EPAIQAError):
            raise cause from None
        raise ConfigError(f"cannot build {node.get('_target_', 'a config node')}: {exc}") from None


def _predictions_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["id", "edit_type", "mos", "pred"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns its results (also written to ``results.json`` in the output folder)."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # validates the whole dataset root before any training
    check_strategy(cfg.trainer.get("strategy"))  # before a large model is loaded
    model = build(cfg.model)
    callbacks = [build(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [build(lg) for lg in (cfg.get("logger") or {}).values() if lg is not None]
    trainer: L.Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()])

    ok = False
    try:
        results = _fit_test_record(cfg, out, datamodule, model, trainer)
        ok = True
        return results
    finally:  # one W&B run per train() call: sweeps in one process, tests, notebooks
        finish_wandb(loggers, ok)


def finish_wandb(loggers: list[Any], ok: bool) -> None:
    """Close the W&B run of this train() call, if a W&B logger opened one."""
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=0 if ok else 1)


def _fit_test_record(
    cfg: DictConfig, out: Path, datamodule: Any, model: L.LightningModule, trainer: L.Trainer
) -> dict[str, Any]:
    """Untrained test (optional), fit, test the best checkpoint, write the results files."""
    untrained: dict[str, Any] = {}
    if cfg.get("eval_untrained") and not cfg.get("ckpt_path"):
        model.metric_prefix = "untrained"
        trainer.test(model, datamodule=datamodule, verbose=False)
        untrained = results_by_task(model, datamodule)
        model.metric_prefix = "test"

    best = None
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        if checkpoint is not None:
            best = checkpoint.best_model_path or checkpoint.last_model_path or None
    trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)

    by_task = results_by_task(model, datamodule)
    if not trainer.is_global_zero:  # every process has the gathered results; one writes them
        return {}
    data = {"root": str(datamodule.dataset_root)}
    data |= {k: getattr(datamodule, k) for k in ("view", "reference") if hasattr(datamodule, k)}
    all_results = {}
    for task, metrics in by_task.items():
        all_results[task] = {
            "task": task,
            "model": cfg.get("model_name") or type(model).__name__,
            "seed": int(cfg.seed),
            "n": metrics["all"]["n"] if "all" in metrics else metrics.get("n"),
            "metrics": metrics,
            "untrained": untrained.get(task),
            "data": data,
            "checkpoint": best,
            "epochs": trainer.current_epoch,
        }
        folder = out if len(by_task) == 1 else out / task
        write_results(folder, all_results[task])
        if "all" in metrics:
            print_results(all_results[task])
        else:
            print(f"{task}: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    atomic_write_text(out / "predictions.csv", _predictions_csv(model.test_predictions))
    generations = getattr(model, "test_generations", None)
    if generations:
        lines = (json.dumps(row, ensure_ascii=False) for row in generations)
        atomic_write_text(out / "explanations.jsonl", "".join(line + "\n" for line in lines))
        log_explanations(trainer, generations)
    return all_results[next(iter(by_task))] if len(by_task) == 1 else {"by_task": all_results}


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


def results_by_task(model: L.LightningModule, datamodule: Any) -> dict[str, dict[str, Any]]:
    """Test metrics per task: the LMM scores several tasks in one run, a baseline one."""
    by_task = getattr(model, "test_results_by_task", None)
    return dict(by_task) if by_task is not None else {datamodule.task: model.test_results}


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(cfg: DictConfig) -> float | None:
    """Entry used by ``run.py``.

    A single run turns project errors into one message and exit status 1. In a multirun sweep a
    failed job writes ``failed.json`` (the error, the overrides) into its folder and returns, so the
    other jobs still run and ``epaiqa report`` lists the failure.
    """
    try:
        results = train(cfg)
    except Exception as exc:
        if not _multirun():
            if isinstance(exc, EPAIQAError):
                print(f"error: {exc}", file=sys.stderr)
                raise SystemExit(1) from None
            raise
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        failure = {"error": f"{type(exc).__name__}: {exc}", "overrides": list(hc.overrides.task)}
        atomic_write_json(Path(hc.runtime.output_dir) / "failed.json", failure)
        print(f"job {hc.job.num} failed: {failure['error']}", file=sys.stderr)
        return None
    if not results:  # a non-zero rank of a distributed run
        return None
    first = results if "metrics" in results else next(iter(results["by_task"].values()))
    return first["metrics"].get("all", {}).get("srcc")
