"""Entry point: ``python run.py experiment=stage2_harmony`` (all logic lives in :mod:`epaiqa.jobs`)."""

import sys

import hydra
from omegaconf import DictConfig

from epaiqa.jobs import FAILED_JOBS, run
from epaiqa.runs import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose the config, train, test, write results.json; return the sweepers' objective (best val SRCC)."""
    return run(cfg)


if __name__ == "__main__":
    main()
    if FAILED_JOBS:  # a sweep whose jobs failed exits non-zero (each failed job wrote failed.json + traceback.txt)
        print(f"{len(FAILED_JOBS)} sweep job(s) failed: {', '.join(FAILED_JOBS)}", file=sys.stderr)
        sys.exit(1)
