"""Entry point: ``python run.py experiment=stage2_harmony`` (all logic lives in :mod:`epaiqa.train`)."""

import hydra
from omegaconf import DictConfig

from epaiqa.train import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose the config, train, test, write results.json; return test SRCC for sweepers."""
    return run(cfg)


if __name__ == "__main__":
    main()
