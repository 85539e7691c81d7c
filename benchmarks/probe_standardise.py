"""The statistics tokens' standardisation: how fast a small head learns from them, with and without.

``python -m benchmarks.probe_standardise`` (EPAIQA_CACHE with the 3000-sample demo set) computes the frozen
ImageNet Lite0 statistics of blocks 0–5 on each task's training views (the questions' views), LayerNorm-s each
block's vector as :class:`~epaiqa.lmm.mini.StatisticsTokens` does, and trains a head shaped like the path those
tokens take (a linear map to a token, an MLP projector, a readout) by AdamW with batches of 4 — the LMM's batch
and its statistics layer's rate (1e-3) — on the views of 80% of the training split's source photos. It prints the
held-out SRCC (the other 20%'s views, never the test split) after 250, 500 and 1,000 steps, with the LayerNorm
only (the composition before v3) and with each feature standardised by its training mean and standard deviation
(``model.standardise_statistics``), beside a ridge probe's. Not part of the suite: the measurement behind the
option.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: readouts (steps of 4) and seeds of the head
STEPS = (250, 500, 1000)


def training_statistics(task: str) -> tuple[Any, Any, Any]:
    """(N, features) LayerNorm-ed statistics of blocks 0–5, the MOS and whether held out, of the training views."""
    import numpy as np
    import torch

    from benchmarks.common import demo_root
    from benchmarks.probe_lite0 import frozen_lite0, view_statistics
    from epaiqa.data.manifest import load_manifest
    from epaiqa.data.splits import load_splits

    root = demo_root()
    samples = {s.id: s for s in load_manifest(root)}
    ids = load_splits(root, list(samples.values()))[task]["train"]
    blocks = view_statistics(frozen_lite0(), root, [samples[i] for i in ids], task)[:6]
    normed = [torch.nn.functional.layer_norm(torch.from_numpy(b), (b.shape[1],)).numpy() for b in blocks]
    x = np.concatenate(normed, 1)
    sources = sorted({samples[i].source for i in ids})
    held = set(sources[int(len(sources) * 0.8) :])
    return x, np.array([samples[i].score(task) for i in ids]), np.array([samples[i].source in held for i in ids])


def head_srcc(x_train: Any, y_train: Any, x_held: Any, y_held: Any, seed: int, lr: float) -> list[float]:
    """Held-out SRCC after each of :data:`STEPS` AdamW steps of 4 of a token-map → projector → readout head."""
    import torch
    from scipy.stats import spearmanr

    torch.manual_seed(seed)
    a, b = torch.tensor(x_train, dtype=torch.float32), torch.tensor(x_held, dtype=torch.float32)
    y = torch.tensor((y_train - y_train.mean()) / y_train.std(), dtype=torch.float32)
    head = torch.nn.Sequential(
        torch.nn.Linear(a.shape[1], 256),  # the statistics layer (to the tower's width, scaled down)
        torch.nn.Linear(256, 128),  # the projector's MLP
        torch.nn.GELU(),
        torch.nn.Linear(128, 128),
        torch.nn.Linear(128, 1),  # what the LLM and its LM head make of it
    )
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr)
    out = []
    for step in range(1, STEPS[-1] + 1):
        i = torch.randint(0, len(a), (4,))
        loss = (head(a[i]).squeeze(1) - y[i]).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step in STEPS:
            with torch.no_grad():
                out.append(float(spearmanr(head(b).squeeze(1).numpy(), y_held)[0]))
    return out


def main() -> None:
    import numpy as np
    import torch
    from scipy.stats import spearmanr
    from sklearn.linear_model import RidgeCV

    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_standardise", description=__doc__)
    parser.add_argument("--seeds", type=int, default=2, help="seeds of the head per setting")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate of the head")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for task in ("naturalness", "harmony"):
        x, y, held = training_statistics(task)
        fit = ~held
        mean, std = x[fit].mean(0), x[fit].std(0).clip(1e-4)
        ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit((x[fit] - mean) / std, y[fit])
        ridge_srcc = spearmanr(ridge.predict((x[held] - mean) / std), y[held])[0]
        print(f"{task}: {fit.sum()} training / {held.sum()} held-out views; ridge {ridge_srcc:.3f}", flush=True)
        for name, z in (("LayerNorm only", x), ("LayerNorm + standardised", (x - mean) / std)):
            for seed in range(args.seeds):
                srcc = head_srcc(z[fit], y[fit], z[held], y[held], seed, args.lr)
                steps = " / ".join(f"{s}: {r:.3f}" for s, r in zip(STEPS, srcc, strict=True))
                print(f"  {name:<25} seed {seed}  held-out SRCC after steps {steps}", flush=True)


if __name__ == "__main__":
    main()
