"""``load_scorer``: a finished run folder (or one of its checkpoints) as the scorer of its kind.

It reads ``results.json`` and ``config.yaml``, checks the checkpoint, and builds a baseline
(:class:`~epaiqa.scoring.baseline.Scorer`), an EPAIQA stage (:class:`~epaiqa.scoring.lmm.LMMScorer`) or a best
competitor (:class:`~epaiqa.scoring.competitor.RegressorScorer`). Calling a scorer scores one source/edited pair;
``score_manifest`` scores a whole root into a JSONL file that ``epaiqa evaluate`` reads, resuming where a previous
call stopped.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from epaiqa.checkpoint import check_checkpoint_file
from epaiqa.errors import ConfigError, DataError
from epaiqa.records.results import RESULTS
from epaiqa.runs import register_resolvers
from epaiqa.scoring.base import CONFIG, ManifestScoring, checkpoint_of, run_record
from epaiqa.scoring.baseline import SCORING_MODEL, load_baseline_scorer
from epaiqa.scoring.competitor import load_regressor_scorer
from epaiqa.scoring.lmm import STAGE_MODELS, build_lmm_scorer


def load_scorer(path: str | Path) -> ManifestScoring:
    """The trained model of a run: its folder (best checkpoint) or one of its ``checkpoints/*.ckpt``.

    A baseline run gives a :class:`~epaiqa.scoring.baseline.Scorer` of its dimension; an EPAIQA stage-1/2/3 run an
    :class:`~epaiqa.scoring.lmm.LMMScorer` of every dimension its model knows; a best-competitor run (Table 3)
    a :class:`~epaiqa.scoring.competitor.RegressorScorer` of the overall score from its picked runs.
    :class:`DataError` / :class:`ConfigError` name what is missing or of another kind.
    """
    path = Path(path)
    chosen = path if path.is_file() and path.suffix == ".ckpt" else None
    folder = path.parent.parent if chosen is not None else path
    if not folder.is_dir():
        raise DataError(f"{path}: not a run folder or a checkpoint inside one")
    if (folder / RESULTS).is_file() and not (folder / CONFIG).is_file() and (folder.parent / CONFIG).is_file():
        folder = folder.parent  # a task's record of a run that tested several (stage 2 mixed: <run>/<task>/)
    record = run_record(folder)
    if record.kind == "regressor":
        return load_regressor_scorer(folder, record, load_scorer)
    config = folder / CONFIG
    if not config.is_file():
        raise DataError(f"{folder}: no {CONFIG} (not a run folder written by run.py)")
    register_resolvers()
    cfg = OmegaConf.load(config)
    assert isinstance(cfg, DictConfig)
    target = OmegaConf.select(cfg, "model._target_")
    if target not in STAGE_MODELS and target != SCORING_MODEL:
        raise ConfigError(
            f"{folder}: a run of {target or 'an unknown model'}, which cannot score here (baselines, EPAIQA stages and "
            "best competitors can); bring other models' predictions in with `epaiqa evaluate`"
        )
    weights = chosen or checkpoint_of(folder, record)
    check_checkpoint_file(weights, "score")
    if target in STAGE_MODELS:
        return build_lmm_scorer(folder, record, cfg, weights)
    return load_baseline_scorer(folder, record, cfg, weights)
