"""The paper's figures and the benchmark's plots, drawn with matplotlib's Agg renderer (no pyplot, no global state).

Dataset figures (§3.3): the rating distribution of each dimension per edit type (Fig. 4), the edited regions'
sizes and the subsets' sizes (Fig. 5), the 3-D scatter of
harmony, local naturalness and overall quality over the samples with full prompt completion (Fig. 6), and the
divergence heat map of the overall score across harmony and naturalness levels (Fig. 7). Benchmark plots: the
predicted score against the MOS per model, and SRCC per edit type as bars.

Every figure is a function from plain data to a :class:`~matplotlib.figure.Figure`; :func:`to_png` renders one.
The numbers behind Figs. 4 and 7 come from functions of their own (:func:`rating_histograms`,
:func:`divergence_grid`), so they can be checked apart from the drawing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from epaiqa.data.levels import LEVELS, bin_level, level_index
from epaiqa.data.schema import EDIT_TYPES, SCORE_RANGES, PAISample
from epaiqa.data.splits import subset_members
from epaiqa.io import atomic_write
from epaiqa.records.results import COLUMNS, TYPE_LABELS

#: Fig. 4's panels: the three 1–5 dimensions and prompt completion (1–3)
FIG4_DIMENSIONS: tuple[str, ...] = ("overall", "harmony", "naturalness", "completion")
#: Fig. 6's axes x, y, z
FIG6_AXES: tuple[str, ...] = ("harmony", "naturalness", "overall")
#: the prompt-completion level of Figs. 6 and 7 (fully compliant)
FULL_COMPLETION = 3
TYPE_COLOURS = dict(zip(EDIT_TYPES, ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"), strict=True))
DIMENSION_NAMES = {"overall": "overall quality", "harmony": "harmony", "naturalness": "local naturalness"}
DIMENSION_NAMES |= {"completion": "prompt completion"}


def type_label(edit_type: str) -> str:
    """``Type-1 style change`` for ``style_change``."""
    return f"{TYPE_LABELS.get(edit_type, edit_type)} {edit_type.replace('_', ' ')}"


def rating_edges(dimension: str) -> np.ndarray:
    """Histogram bin edges of a dimension: half-point bins on 1–5, one bin per level of prompt completion."""
    lo, hi = SCORE_RANGES[dimension]
    if dimension == "completion":
        return np.arange(lo - 0.5, hi + 1.0)
    return np.linspace(lo, hi, 2 * (hi - lo) + 1)


def rating_histograms(samples: Sequence[PAISample], dimension: str) -> dict[str, np.ndarray]:
    """Per edit type, the count of samples per bin of :func:`rating_edges` (unrated samples left out)."""
    edges = rating_edges(dimension)
    out = {}
    for edit_type in EDIT_TYPES:
        values = [v for s in samples if s.edit_type == edit_type and (v := s.score(dimension)) is not None]
        out[edit_type] = np.histogram(values, bins=edges)[0]
    return out


def full_completion(samples: Sequence[PAISample], level: int | None = FULL_COMPLETION) -> list[PAISample]:
    """Samples rated on overall, harmony and naturalness whose prompt completion rounds to ``level`` (None: any)."""
    out = []
    for s in samples:
        if any(s.score(d) is None for d in ("overall", "harmony", "naturalness")):
            continue
        completion = s.score("completion")
        if level is None or (completion is not None and round(completion) == level):
            out.append(s)
    return out


@dataclass
class DivergenceGrid:
    """Fig. 7's numbers: rows are naturalness levels, columns harmony levels (bad..excellent on the 1–5 scale).

    ``mean`` holds the mean overall score of the samples in a cell (NaN where none), ``counts`` their number.
    """

    mean: np.ndarray
    counts: np.ndarray

    def to_text(self) -> str:
        """The grid as text, excellent naturalness on top (``mean (n)`` per cell, ``—`` where empty)."""
        lines = [f"{'naturalness / harmony':>22} " + " ".join(f"{level:>11}" for level in LEVELS)]
        for row in range(len(LEVELS) - 1, -1, -1):
            cells = [
                f"{self.mean[row, col]:5.2f} ({n:3d})" if (n := self.counts[row, col]) else f"{'—':>11}"
                for col in range(len(LEVELS))
            ]
            lines.append(f"{LEVELS[row]:>22} " + " ".join(cells))
        return "\n".join(lines)


def divergence_grid(samples: Sequence[PAISample], completion: int | None = FULL_COMPLETION) -> DivergenceGrid:
    """The mean overall score per (naturalness level, harmony level) cell, over :func:`full_completion` samples."""
    sums = np.zeros((len(LEVELS), len(LEVELS)))
    counts = np.zeros((len(LEVELS), len(LEVELS)), dtype=int)
    for s in full_completion(samples, completion):
        row = level_index(bin_level(float(s.score("naturalness"))))  # type: ignore[arg-type]
        col = level_index(bin_level(float(s.score("harmony"))))  # type: ignore[arg-type]
        sums[row, col] += float(s.score("overall"))  # type: ignore[arg-type]
        counts[row, col] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return DivergenceGrid(mean=mean, counts=counts)


def rating_distributions(samples: Sequence[PAISample]) -> Figure:
    """Fig. 4: the rating distribution of each dimension per edit type (share of each type's rated samples)."""
    fig = Figure(figsize=(13, 3.2), layout="constrained")
    axes = fig.subplots(1, len(FIG4_DIMENSIONS))
    for ax, dimension in zip(axes, FIG4_DIMENSIONS, strict=True):
        edges = rating_edges(dimension)
        for edit_type, counts in rating_histograms(samples, dimension).items():
            share = counts / counts.sum() if counts.sum() else counts.astype(float)
            ax.stairs(share, edges, color=TYPE_COLOURS[edit_type], linewidth=1.8, label=type_label(edit_type))
        ax.set_title(DIMENSION_NAMES[dimension])
        lo, hi = SCORE_RANGES[dimension]
        ax.set_xticks(np.arange(lo, hi + 1))
        ax.set_xlabel("MOS" if dimension != "completion" else "level (1 non-, 3 fully compliant)")
    axes[0].set_ylabel("share of samples")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(EDIT_TYPES))
    fig.suptitle(f"Rating distributions per edit type ({len(samples)} samples)")
    return fig


#: Fig. 5a's bins: the edited region's share of the image area, in percent (appendix D keeps 5–75%)
AREA_EDGES = np.arange(0, 105, 5)


def bbox_area_shares(samples: Sequence[PAISample]) -> dict[str, np.ndarray]:
    """Fig. 5a's numbers: per edit type, the count of samples per 5% bin of the region's share of the image."""
    return {
        edit_type: np.histogram(
            [100 * s.bbox[2] * s.bbox[3] for s in samples if s.edit_type == edit_type], bins=AREA_EDGES
        )[0]
        for edit_type in EDIT_TYPES
    }


def subset_sizes(samples: Sequence[PAISample]) -> dict[str, int]:
    """Fig. 5b's numbers: the samples of each subset (§3.2: those whose needed scores survived cleaning)."""
    return {task: len(ids) for task, ids in subset_members(samples).items()}


def data_distribution(samples: Sequence[PAISample]) -> Figure:
    """Fig. 5: (a) the edited region's share of the image per edit type; (b) the number of samples per subset."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    area, sizes = fig.subplots(1, 2, width_ratios=(2, 1))
    for edit_type, counts in bbox_area_shares(samples).items():
        area.stairs(counts, AREA_EDGES, color=TYPE_COLOURS[edit_type], linewidth=1.8, label=type_label(edit_type))
    area.set_xlabel("edited region, % of the image area")
    area.set_ylabel("samples")
    area.set_title("(a) bbox size distribution")
    area.legend(fontsize=7)
    counts = subset_sizes(samples)
    bars = sizes.bar(list(counts), list(counts.values()), color="#4c72b0")
    sizes.bar_label(bars, fontsize=8)
    sizes.set_title("(b) samples per subset")
    return fig


def quality_scatter_3d(samples: Sequence[PAISample]) -> Figure:
    """Fig. 6: harmony, local naturalness and overall quality of the samples with full prompt completion."""
    chosen = full_completion(samples)
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    for edit_type in EDIT_TYPES:
        of_type = [s for s in chosen if s.edit_type == edit_type]
        points = np.array([[s.score(d) for d in FIG6_AXES] for s in of_type], dtype=float).reshape(-1, 3)
        ax.scatter(*points.T, s=6, alpha=0.6, color=TYPE_COLOURS[edit_type], label=type_label(edit_type))
    ax.set_xlabel("harmony")
    ax.set_ylabel("local naturalness")
    ax.set_zlabel("overall quality")
    for axis in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        axis(1, 5)
    ax.view_init(elev=20, azim=-60)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"Prompt completion {FULL_COMPLETION} ({len(chosen)} samples)")
    return fig


def divergence_heatmap(samples: Sequence[PAISample]) -> Figure:
    """Fig. 7: the mean overall score per harmony × naturalness level cell (full prompt completion), with counts."""
    grid = divergence_grid(samples)
    fig = Figure(figsize=(6.8, 5.2), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid.mean, origin="lower", cmap="RdYlGn", vmin=1, vmax=5, aspect="auto")
    for (row, col), n in np.ndenumerate(grid.counts):
        if n:
            ax.text(col, row, f"{grid.mean[row, col]:.2f}\nn={n}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(LEVELS)), LEVELS)
    ax.set_yticks(range(len(LEVELS)), LEVELS)
    ax.set_xlabel("harmony level")
    ax.set_ylabel("local naturalness level")
    fig.colorbar(image, ax=ax, label="mean overall quality score")
    ax.set_title(f"Prompt completion {FULL_COMPLETION} ({int(grid.counts.sum())} samples)")
    return fig


@dataclass
class ScatterPanel:
    """One model's test predictions on one task: what :func:`predicted_vs_mos` draws in a panel."""

    label: str
    mos: np.ndarray
    pred: np.ndarray
    edit_type: list[str]
    srcc: float | None = None


def predicted_vs_mos(panels: Sequence[ScatterPanel], task: str, columns: int = 4) -> Figure:
    """Predicted score against MOS, one panel per model, points coloured by edit type."""
    rows = max(1, -(-len(panels) // columns))
    width = min(columns, max(1, len(panels)))
    fig = Figure(figsize=(3.3 * width, 3.0 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, width, squeeze=False)).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        types = np.array(panel.edit_type)
        for edit_type in EDIT_TYPES:
            keep = types == edit_type
            ax.scatter(panel.mos[keep], panel.pred[keep], s=5, alpha=0.6, color=TYPE_COLOURS[edit_type])
        srcc = "" if panel.srcc is None else f"\nSRCC {panel.srcc:.3f}, n={len(panel.mos)}"
        ax.set_title(_short(panel.label) + srcc, fontsize=8)
        ax.set_xlabel("MOS", fontsize=8)
        ax.set_ylabel("predicted", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    handles = [axes[0].scatter([], [], s=12, color=TYPE_COLOURS[t], label=type_label(t)) for t in EDIT_TYPES]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(EDIT_TYPES), fontsize=8)
    fig.suptitle(f"{task}: predicted score against MOS (test split)")
    return fig


def srcc_bars(srcc: dict[str, dict[str, float | None]], title: str) -> Figure:
    """SRCC per edit type and overall, one bar per model (``srcc``: model → column → value; None drawn as no bar)."""
    labels = list(srcc)
    fig = Figure(figsize=(9, 3.4 + 0.22 * len(labels)), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(COLUMNS))
    for i, label in enumerate(labels):
        heights = [np.nan if (v := srcc[label].get(c)) is None else v for c in COLUMNS]
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=_short(label))
    ax.set_xticks(x, [TYPE_LABELS[c] for c in COLUMNS])
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("SRCC")
    ax.set_title(title, fontsize=10)
    fig.legend(loc="outside lower center", ncols=min(3, max(1, len(labels))), fontsize=7)
    return fig


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_png(fig: Figure, dpi: int = 90) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


#: the dataset figures of §3.3: file stem → (figure function, caption)
DATASET_FIGURES = {
    "fig4_rating_distributions": (
        rating_distributions,
        "Fig. 4: rating distribution of each dimension per edit type (share of each type's rated samples).",
    ),
    "fig5_data_distribution": (
        data_distribution,
        "Fig. 5: (a) the edited region's share of the image area per edit type; (b) samples per subset.",
    ),
    "fig6_quality_scatter_3d": (
        quality_scatter_3d,
        "Fig. 6: harmony, local naturalness and overall quality of the samples with full prompt completion.",
    ),
    "fig7_divergence_heatmap": (
        divergence_heatmap,
        "Fig. 7: divergence heat map — the mean overall score per harmony × local naturalness level "
        "(full prompt completion; levels bin the 1–5 scale into bad, poor, fair, good, excellent).",
    ),
}


def dataset_pngs(samples: Sequence[PAISample]) -> dict[str, bytes]:
    """Figs. 4–7 of a dataset as PNG bytes, by file stem."""
    return {stem: to_png(draw(samples)) for stem, (draw, _) in DATASET_FIGURES.items()}


def write_dataset_figures(samples: Sequence[PAISample], out: str | Path) -> list[Path]:
    """Write Figs. 4–7 as ``OUT/<stem>.png``; returns the paths."""
    written = []
    for stem, png in dataset_pngs(samples).items():
        written.append(atomic_write(Path(out) / f"{stem}.png", lambda handle, png=png: handle.write(png)))
    return written
