"""The metrics every results record carries: SRCC, PLCC, KRCC, RMSE and PLCC after VQEG's logistic fit."""

import torch

from epaiqa.records.metrics import correlations


def test_logistic_plcc_straightens_a_monotonic_nonlinear_relation() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, generator=g)
    mos = 1 + 4 / (1 + torch.exp(-(x - 0.5) / 0.08)) + 0.05 * torch.randn(300, generator=g)
    out = correlations(x, mos)
    assert out["plcc_logistic"] > 0.99 > out["plcc"] and out["n"] == 300
    assert out["srcc"] > 0.98 and 0 < out["krcc"] < out["srcc"] and out["rmse"] > 1
    flipped = correlations(-x, mos)  # falls as MOS rises: negative, as its SRCC
    assert flipped["plcc_logistic"] < -0.99 and flipped["srcc"] < -0.98


def test_undefined_metrics_are_none() -> None:
    out = correlations(torch.ones(10), torch.arange(10.0))
    assert out["srcc"] is None and out["plcc_logistic"] is None and out["rmse"] is not None
    assert correlations(torch.arange(4.0), torch.arange(4.0))["plcc_logistic"] is None  # n < 5
