"""What a run is, decided in one place: train and test a model, or fit the best competitor (Table 3).

:func:`run` is what ``run.py`` calls for every job of a single run or a sweep: it dispatches through
:func:`run_job`, turns project errors into one line (single run) or a ``failed.json`` beside the job's traceback
(sweep), stops on SIGTERM with the command that resumes, and returns the sweepers' objective.
"""

from __future__ import annotations

import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from epaiqa.competitor import run_best_competitor
from epaiqa.errors import EPAIQAError
from epaiqa.io import atomic_write_json, atomic_write_text
from epaiqa.records.results import FAILED, TRACEBACK, RunRecord
from epaiqa.train import open_run, train

#: sweep jobs of this process that failed (run.py exits non-zero when any did)
FAILED_JOBS: list[str] = []


def run_job(cfg: DictConfig) -> dict[str, RunRecord]:
    """One job: the best competitor (a regressor on finished runs' predictions, no training loop) or a model."""
    if cfg.get("competitor") is not None:
        return {"overall": run_best_competitor(cfg, open_run(cfg))}
    return train(cfg)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(folder: Path, exc: BaseException, overrides: list[str]) -> dict[str, Any]:
    """Write ``failed.json`` (error, overrides, traceback file) and ``traceback.txt`` into a job's folder."""
    atomic_write_text(folder / TRACEBACK, "".join(traceback.format_exception(exc)))
    failure = {"error": f"{type(exc).__name__}: {exc}", "overrides": overrides, "traceback": TRACEBACK}
    atomic_write_json(folder / FAILED, failure)
    return failure


def run(cfg: DictConfig) -> float | None:
    """Entry used by ``run.py``.

    A single run turns project errors into one message and exit status 1. In a multirun sweep a failed job
    writes ``failed.json`` and its full ``traceback.txt`` into its folder and returns, so the other jobs still
    run; ``run.py`` then exits non-zero, and ``epaiqa report`` lists the failure.
    """
    try:
        records = run_job(cfg)
    except SIGTERMException:
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        resume = f"resume with ckpt_path={last}" if last.is_file() else "no checkpoint was written yet"
        print(f"error: stopped by SIGTERM; {resume}", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception as exc:
        if not _multirun():
            if isinstance(exc, EPAIQAError):
                print(f"error: {exc}", file=sys.stderr)
                raise SystemExit(1) from None
            raise
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        failure = record_failure(Path(hc.runtime.output_dir), exc, list(hc.overrides.task))
        FAILED_JOBS.append(hc.runtime.output_dir)
        print(f"job {hc.job.num} failed: {failure['error']} (see {hc.runtime.output_dir}/{TRACEBACK})", file=sys.stderr)
        return None
    if not records:  # a non-zero rank of a distributed run
        return None
    first = next(iter(records.values()))
    return objective(first)


def objective(record: RunRecord) -> float | None:
    """What a sweeper maximises: the best validation SRCC of the run, else (no validation split) the test SRCC."""
    best = (record.data or {}).get("best_val") or {}
    if best.get("value") is not None:
        return float(best["value"])
    return record.test["all"].get("srcc") if record.is_table else None
