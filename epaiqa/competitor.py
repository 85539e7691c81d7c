"""The best-competitor regressors of Table 3 (§5.1): overall quality from two picked models' sub-scores.

For NR and FR apart, the paper picks among the trained baselines the one with the highest *training-set* SRCC on
harmony and the one on naturalness, predicts both sub-scores for every sample of the overall subset with them,
fits a random forest from the two predicted sub-scores to the overall MOS on the training split, and scores the
overall test split restricted to prompt completion 3. :func:`run_best_competitor` does exactly that from the run
folders of finished sweeps (``competitor.runs``) and writes the usual results record (kind ``regressor``) with
the picked runs, their training SRCCs and the regressor's cross-validated hyper-parameters. Given no runs, it
trains the candidates itself first (``competitor.candidates``, into ``<run>/candidates/``).

Hyper-parameters are chosen by grid search with grouped K-fold cross-validation on the training split only
(folds by source image, so edits of one photo never sit on both sides); the record's training metrics are the
out-of-fold predictions of that search's best setting, not in-sample fits.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict
from sklearn.base import RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from epaiqa.data.schema import PAISample
from epaiqa.errors import ConfigError, EPAIQAError
from epaiqa.io import atomic_write, atomic_write_csv
from epaiqa.records.imported import SCORES_FILE, read_predictions
from epaiqa.records.metrics import correlation_result
from epaiqa.records.results import COMPLETION3, RunRecord, find_records, n_of, print_record, read_record, write_record
from epaiqa.runs import build, composed_run, git_commit, run_setting
from epaiqa.scoring.competitor import MODEL_FILE, SUBTASKS
from epaiqa.scoring.load import load_scorer
from epaiqa.train import train

MODES = ("nr", "fr")
#: which training samples of the overall subset the regressor is fitted on: every one, or prompt completion 3 only
#: (Table 3 tests on completion 3; the paper does not say which it fitted on)
FIT_ON = ("all", COMPLETION3)
REGRESSORS = ("random_forest", "svr")


@dataclass
class Pick:
    """The run picked for one sub-score: the highest training-set SRCC among the candidates."""

    task: str
    run: str
    model: str
    train_srcc: float
    candidates: int


#: the kinds of run a best competitor may pick: trained baselines, and imported predictions (``epaiqa evaluate``)
#: that cover the training split too (the paper's NR harmony pick is zero-shot q-align)
PICKABLE = ("trained", "imported")


def _candidate(record: RunRecord, mode: str, fingerprint: str | None) -> bool:
    return (
        record.task in SUBTASKS
        and record.kind in PICKABLE
        and bool(record.data.get("reference")) == (mode == "fr")
        and record.train is not None
        and record.train["all"].get("srcc") is not None
        and (fingerprint is None or record.data_fingerprint == fingerprint)
    )


def pick_runs(dirs: list[str | Path], mode: str, fingerprint: str | None = None) -> dict[str, Pick]:
    """Per sub-score, the run under ``dirs`` with the highest training-set SRCC (NR runs or FR runs only).

    Trained baseline runs and imported predictions with training-split metrics of the same data (``fingerprint``)
    count; a sub-score without any candidate stops with a message saying what was found.
    """
    if mode not in MODES:
        raise ConfigError(f"competitor.mode must be one of {', '.join(MODES)}, got {mode!r}")
    missing = [str(d) for d in dirs if not Path(d).exists()]
    if missing:
        raise ConfigError(f"competitor.runs: {', '.join(missing)} not found")
    paths, _ = find_records(list(dirs))
    by_task: dict[str, list[tuple[float, Path, RunRecord]]] = defaultdict(list)
    seen = 0
    for path in paths:
        try:
            record = read_record(path)
        except EPAIQAError:
            continue
        seen += 1
        if _candidate(record, mode, fingerprint):
            by_task[record.task].append((float(record.train["all"]["srcc"]), path.parent, record))  # type: ignore[index]
    absent = [t for t in SUBTASKS if not by_task[t]]
    if absent:
        raise ConfigError(
            f"competitor.runs: no trained {mode.upper()} run of {' or '.join(absent)} with training-set metrics on "
            f"this dataset among {seen} results records under {', '.join(map(str, dirs))} (train them first, e.g. "
            f"`python run.py -m experiment=baseline_{absent[0]} baseline=...`)"
        )
    picks = {}
    for task in SUBTASKS:
        srcc, folder, record = max(by_task[task], key=lambda item: (item[0], str(item[1])))
        picks[task] = Pick(task, str(folder), record.model, srcc, len(by_task[task]))
    return picks


def make_regressor(name: str, seed: int) -> RegressorMixin:
    """An unfitted regressor: scikit-learn's random forest, or an RBF SVR on standardised inputs."""
    if name == "random_forest":
        return RandomForestRegressor(random_state=seed)
    if name == "svr":
        return make_pipeline(StandardScaler(), SVR())
    raise ConfigError(f"competitor.regressor must be one of {', '.join(REGRESSORS)}, got {name!r}")


def _grid(name: str, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The search grid in scikit-learn's parameter names (the SVR's live inside a pipeline)."""
    if not grid:
        raise ConfigError(f"competitor.grid.{name} is empty: give at least one value per hyper-parameter")
    return {(f"svr__{k}" if name == "svr" else k): list(v) for k, v in grid.items()}


@dataclass
class Fit:
    """A fitted regressor, its chosen hyper-parameters, its CV score and out-of-fold training predictions."""

    estimator: RegressorMixin
    params: dict[str, Any]
    cv_rmse: float
    folds: int
    oof: np.ndarray


def fit_regressor(
    x: np.ndarray, y: np.ndarray, groups: list[str], name: str, grid: dict[str, list[Any]], folds: int, seed: int
) -> Fit:
    """Grid search with grouped K-fold CV (RMSE) on the training split, refit on all of it."""
    n_groups = len(set(groups))
    folds = min(folds, n_groups)
    if folds < 2:
        raise ConfigError(f"the overall training split has {n_groups} source image(s): too few to cross-validate")
    cv = GroupKFold(n_splits=folds)
    search = GridSearchCV(make_regressor(name, seed), _grid(name, grid), cv=cv, scoring="neg_root_mean_squared_error")
    try:
        search.fit(x, y, groups=groups)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"competitor.grid.{name}: {exc}") from None
    oof = cross_val_predict(search.best_estimator_, x, y, groups=groups, cv=cv)
    params = {k.removeprefix("svr__"): v for k, v in search.best_params_.items()}
    return Fit(search.best_estimator_, params, float(-search.best_score_), folds, oof)


def _rows(samples: list[PAISample], pred: np.ndarray, x: np.ndarray) -> list[dict[str, Any]]:
    return [
        {
            "id": s.id,
            "task": "overall",
            "edit_type": s.edit_type,
            "mos": float(s.score("overall")),  # type: ignore[arg-type]
            "pred": float(p),
            "completion": int(s.score("completion") or 0),
            **{f"{t}_pred": float(v) for t, v in zip(SUBTASKS, xi, strict=True)},
        }
        for s, p, xi in zip(samples, pred, x, strict=True)
    ]


def imported_scores(run: str | Path, samples: list[PAISample]) -> dict[str, float]:
    """An imported run's predictions for ``samples`` (its ``scores.csv``); every sample must have one."""
    path = Path(run) / SCORES_FILE
    if not path.is_file():
        raise ConfigError(f"{run}: an imported run without {SCORES_FILE} (import it again with `epaiqa evaluate`)")
    scores = read_predictions(path)
    missing = [s.id for s in samples if s.id not in scores]
    if missing:
        raise ConfigError(
            f"{run}: the picked imported run predicts {len(missing)} of the {len(samples)} overall samples not "
            f"(e.g. {missing[0]!r}); a best competitor needs a prediction for every one"
        )
    return {s.id: scores[s.id] for s in samples}


def _features(picks: dict[str, Pick], root: Path, parts: list[list[PAISample]], batch_size: int) -> list[np.ndarray]:
    """Per part, the (n, 2) matrix of the picked runs' harmony and naturalness predictions (each model loaded once).

    A trained pick scores the samples with its model; an imported pick reads its own predictions of them.
    """
    preds = []
    everything = [s for part in parts for s in part]
    for task in SUBTASKS:
        if read_record(picks[task].run).kind == "imported":
            preds.append(imported_scores(picks[task].run, everything))
            continue
        scorer = load_scorer(picks[task].run)
        preds.append(scorer.predict(root, everything, "overall", batch_size=batch_size))
    return [np.asarray([[p[s.id] for p in preds] for s in part], dtype=np.float64) for part in parts]


CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_run(overrides: list[str]) -> DictConfig:
    """``conf/train.yaml`` composed with overrides, inside a running Hydra app or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _quoted(value: Any) -> str:
    """A path as a quoted value of Hydra's override grammar (``~``, ``=``, ``,`` and spaces are safe inside)."""
    text = str(value)
    return f"'{text}'" if "'" not in text else '"' + text.replace('"', '\\"') + '"'


def train_candidates(cfg: DictConfig, out: Path, mode: str) -> Path:
    """Train ``competitor.candidates[mode]`` on harmony and on naturalness into ``OUT/candidates/<task>_<name>/``.

    Each candidate is a Tables 1–2 run (``experiment=baseline_<task>``) with ``competitor.candidate_overrides``, on
    this run's data root, demo cache and seed; a candidate whose results record exists is kept (resume).
    """
    names = list((cfg.competitor.get("candidates") or {}).get(mode) or [])
    if not names:
        raise ConfigError(f"competitor.runs is empty and competitor.candidates.{mode} names no baseline to train")
    common = [*cfg.competitor.get("candidate_overrides", []), f"seed={cfg.seed}"]
    common.append(f"paths.cache_dir={_quoted(cfg.paths.cache_dir)}")
    if cfg.data.get("root") is not None:
        common.append(f"data.root={_quoted(cfg.data.root)}")
    folder = out / "candidates"
    for task in SUBTASKS:
        for name in names:
            target = folder / f"{task}_{name}"
            if (target / "results.json").is_file():
                continue
            overrides = [f"experiment=baseline_{task}", f"baseline={name}", *common]
            sub = compose_run(overrides)
            with open_dict(sub):
                sub.paths.output_dir = str(target)
                sub.logger = cfg.get("logger")
            with composed_run(overrides):
                train(sub)
    return folder


def run_best_competitor(cfg: DictConfig, out: Path) -> RunRecord:
    """Pick, predict, fit, test and record one best competitor (``competitor.*`` of the config).

    Without ``competitor.runs`` the candidates are trained first (:func:`train_candidates`).
    """
    comp = cfg.competitor
    mode = str(comp.mode).lower()
    if mode not in MODES:
        raise ConfigError(f"competitor.mode must be one of {', '.join(MODES)}, got {mode!r}")
    runs = list(comp.runs or []) or [train_candidates(cfg, out, mode)]
    datamodule = build(cfg.data)
    root = datamodule.dataset_root
    samples, subsets = datamodule.load()
    fingerprint = datamodule.fingerprint()
    picks = pick_runs(runs, mode, fingerprint)
    by_id = {s.id: s for s in samples}
    fit_on = str(comp.get("fit_on", "all"))
    if fit_on not in FIT_ON:
        raise ConfigError(f"competitor.fit_on must be one of {', '.join(FIT_ON)}, got {fit_on!r}")
    train = [by_id[i] for i in subsets["overall"]["train"]]
    if fit_on == COMPLETION3:
        train = [s for s in train if s.score("completion") == 3]
    test = [by_id[i] for i in subsets["overall"]["test"]]
    if not train or not test:
        raise ConfigError(f"{root}: the overall subset needs training and test samples ({len(train)} / {len(test)})")
    batch = int(comp.batch_size)
    x_train, x_test = _features(picks, root, [train, test], batch)
    y_train = np.asarray([s.score("overall") for s in train], dtype=np.float64)
    name = str(comp.regressor)
    grid = OmegaConf.to_container(comp.grid.get(name) or {}, resolve=True)
    fit = fit_regressor(x_train, y_train, [s.source for s in train], name, grid, int(comp.cv_folds), int(cfg.seed))  # type: ignore[arg-type]
    test_rows = _rows(test, fit.estimator.predict(x_test), x_test)
    on_test, on_train = correlation_result(test_rows), correlation_result(_rows(train, fit.oof, x_train))
    atomic_write(out / MODEL_FILE, lambda f: joblib.dump(fit.estimator, f))
    atomic_write_csv(out / "predictions.csv", test_rows)
    names = {t: picks[t].model for t in SUBTASKS}
    record = RunRecord(
        task="overall",
        model=f"best_competitor_{mode}({names['harmony']}, {names['naturalness']})",
        kind="regressor",
        test=on_test.metrics,
        n=n_of(on_test.metrics),
        seed=int(cfg.seed),
        split_seed=datamodule.split_seed,
        setting=run_setting(cfg),
        git_commit=git_commit(),
        data_fingerprint=fingerprint,
        lineage=[picks[t].run for t in SUBTASKS],
        train=on_train.metrics,
        subsets={COMPLETION3: {"test": on_test.subsets[COMPLETION3], "train": on_train.subsets[COMPLETION3]}},
        data={
            "root": str(root),
            "mode": mode,
            "picks": {t: asdict(p) for t, p in picks.items()},
            "regressor": {"name": name, "params": fit.params, "cv_rmse": fit.cv_rmse, "cv_folds": fit.folds},
            "features": list(SUBTASKS),
            "train_metrics": "out-of-fold predictions of the cross-validation",
            "fit_on": fit_on,
            "n_fit": len(train),
        },
        checkpoint=MODEL_FILE,  # relative to the run folder
    )
    write_record(out, record)
    print_record(record)
    return record
