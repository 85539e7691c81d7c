"""What makes a run a trustworthy record: its own folder, exact resume, its setting, commit and name.

- :func:`register_resolvers` adds the Hydra resolvers of ``conf/hydra/default.yaml``: ``run_id`` (unique per
  process: two runs started in the same second never share a folder) and ``run_dir`` (a resumed run writes
  into the folder of the checkpoint it resumes).
- :class:`~epaiqa.reseed.DeterministicEpochs` (its own module: Lightning is imported only by runs that train)
  makes a resumed run repeat exactly what the uninterrupted run did.
- :func:`build` instantiates a config node, surfacing the project's own errors instead of Hydra's wrapper.
- :func:`run_setting` is what defines the setting apart from the seed; :func:`record_model_name` names the row
  by the chain that made the weights.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from epaiqa.errors import ConfigError, EPAIQAError
from epaiqa.records.results import Setting

#: config keys that do not change what a run computes (or are the seed): left out of the setting
NOT_SETTING = (
    "seed",
    "ckpt_path",
    "paths",
    "logger",
    "callbacks",
    "hydra",
    "eval_untrained",
    "eval_train",
    "task_name",
)
#: override prefixes left out of the recorded overrides (they do not define the setting)
NOT_SETTING_OVERRIDES = ("seed=", "data.split_seed=", "ckpt_path=", "paths.", "hydra.", "logger=", "logger.", "+logger")
#: keys under ``data`` left out of the setting: runs on other random splits are repetitions of one setting
NOT_SETTING_DATA = ("split_seed",)
#: backbones that ship with the package (offline): the demo profile's caps suit them
DEMO_BACKBONES = ("tiny", "mini", "random-0.5b", "random-7b")


@cache
def run_id() -> str:
    """The run id of this process: its pid and 4 random hex digits (unique across simultaneous runs and hosts)."""
    return f"{os.getpid()}-{secrets.token_hex(2)}"


def run_dir(ckpt_path: Any, default: str) -> str:
    """The output folder of a run: the resumed run's own folder when ``ckpt_path`` is ``<run>/checkpoints/*.ckpt``."""
    if ckpt_path:
        path = Path(str(ckpt_path)).expanduser()
        if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
            return str(path.parent.parent)
    return default


#: longest sweep sub-folder name kept as it is (bytes; file systems allow 255 a path component)
MAX_DIRNAME_BYTES = 200


def short_name(name: str) -> str:
    """``${short_name:NAME}``: NAME if it fits :data:`MAX_DIRNAME_BYTES`, else its start and a hash of all of it.

    A sweep job's folder is named by its overrides; long ones (paths, lists) would exceed the file system's
    255 bytes. The hash keeps two long names that share their start apart.
    """
    data = str(name).encode()
    if len(data) <= MAX_DIRNAME_BYTES:
        return str(name)
    start = data[: MAX_DIRNAME_BYTES - 17].decode(errors="ignore")
    return f"{start}~{hashlib.sha256(data).hexdigest()[:16]}"


PROFILES = ("demo", "paper")


def by_profile(demo: Any, paper: Any, *, _root_: DictConfig) -> Any:
    """``${profile:DEMO,PAPER}``: the value of the run's profile (``run_profile``, set by ``conf/profile/``)."""
    name = _root_.get("run_profile", "demo")
    if name not in PROFILES:
        raise ConfigError(f"run_profile must be one of {', '.join(PROFILES)}, got {name!r}")
    value = paper if name == "paper" else demo
    return OmegaConf.create(value) if isinstance(value, dict | list) else value  # storable by OmegaConf.resolve


def register_resolvers() -> None:
    """Register ``${run_id:}``, ``${run_dir:CKPT,DEFAULT}``, ``${profile:DEMO,PAPER}``, ``${short_name:NAME}``."""
    resolvers = (("run_id", run_id), ("run_dir", run_dir), ("profile", by_profile), ("short_name", short_name))
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def _setting_config(cfg: DictConfig) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(data, dict)
    if isinstance(data.get("data"), dict):
        data["data"] = {k: v for k, v in data["data"].items() if k not in NOT_SETTING_DATA}
    return {k: v for k, v in data.items() if k not in NOT_SETTING}


#: overrides of a run composed inside another (the best competitor's candidates), set by :func:`composed_run`
_NESTED_OVERRIDES: list[list[str]] = []


@contextmanager
def composed_run(overrides: list[str]) -> Iterator[None]:
    """Within this block :func:`task_overrides` returns ``overrides``: a run composed and trained by another run."""
    _NESTED_OVERRIDES.append(list(overrides))
    try:
        yield
    finally:
        _NESTED_OVERRIDES.pop()


def task_overrides() -> list[str]:
    """The command-line overrides of this Hydra job (empty outside Hydra), or of the run composed inside it."""
    from hydra.core.hydra_config import HydraConfig

    if _NESTED_OVERRIDES:
        return list(_NESTED_OVERRIDES[-1])
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def run_setting(cfg: DictConfig) -> Setting:
    """The setting of a run: a hash of its composed config without the seeds, paths and loggers, and its overrides."""
    text = OmegaConf.to_yaml(OmegaConf.create(_setting_config(cfg)), sort_keys=True)
    overrides = [o for o in task_overrides() if not o.lstrip("+~").startswith(NOT_SETTING_OVERRIDES)]
    return Setting(key=hashlib.sha256(text.encode()).hexdigest()[:12], overrides=sorted(overrides))


@cache
def git_commit() -> str | None:
    """The commit of the package's checkout (``+dirty`` with uncommitted changes), or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit or None


#: model-name suffixes of the ablations that leave stage 1 out on purpose
ABLATION_SUFFIXES = ("_wo_stage1", "_reference")
#: row names of the EPAIQA chain (other LMM rows, such as q-align's, have no stage 1 to miss)
EPAIQA_PREFIX = "epaiqa"


def record_model_name(name: str, stage: str | None, lineage: list[str]) -> str:
    """The row name: a stage-2/3 EPAIQA model whose weights never went through stage 1 is ``…_wo_stage1``.

    A backbone scored as loaded (no lineage) keeps its name (``zeroshot_<backbone>``), and so does a model that is
    not EPAIQA's (``qalign_<backbone>``).
    """
    if (
        name.startswith(EPAIQA_PREFIX)
        and stage in ("scoring", "explain")
        and lineage
        and "grounding" not in lineage
        and not name.endswith(ABLATION_SUFFIXES)
    ):
        return f"{name}_wo_stage1"
    return name


def check_profile(cfg: DictConfig) -> None:
    """Refuse to run a real backbone or pretrained baseline under the demo profile's caps unless asked for.

    ``profile=demo`` (the default) caps training batches and test samples for 2 CPU cores; a user who picks a
    real model must say ``profile=paper`` (no caps) or ``profile=demo`` (keep them) explicitly.
    """
    if cfg.get("run_profile", "demo") != "demo" or any(o.startswith("profile=") for o in task_overrides()):
        return
    backbone = OmegaConf.select(cfg, "model.backbone.id", default=None)
    real = backbone is not None and backbone not in DEMO_BACKBONES
    real = real or OmegaConf.select(cfg, "model.backbone.path", default=None) is not None
    if OmegaConf.select(cfg, "model.pretrained", default=False) is True:
        real = True
    if not real:
        return
    from hydra.core.hydra_config import HydraConfig

    message = (
        f"model {backbone or OmegaConf.select(cfg, 'model.baseline')} is a real model but the demo profile's CPU "
        "caps are on (trainer.limit_train_batches, data.limit_test, small inputs): pass profile=paper for the "
        "paper's budgets, or profile=demo to keep the caps"
    )
    if HydraConfig.initialized():
        raise ConfigError(message)
    from lightning.pytorch.utilities import rank_zero_warn

    rank_zero_warn(message)


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
