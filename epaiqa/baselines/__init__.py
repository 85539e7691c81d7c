"""The IQA baseline zoo of the paper's Tables 1–2."""

from epaiqa.baselines.registry import (
    BaselineInfo,
    baseline_info,
    create_baseline,
    list_baselines,
    pretrained_backbone_baselines,
)

__all__ = ["BaselineInfo", "baseline_info", "create_baseline", "list_baselines", "pretrained_backbone_baselines"]
