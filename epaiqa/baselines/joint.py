"""JOINT: joint objective image naturalness evaluator, a technical and a rationality branch.

Paper: Z. Chen, W. Sun, H. Wu, Z. Zhang, J. Jia, R. Huang, X. Min, G. Zhai, W. Zhang, "Study of
Subjective and Objective Naturalness Assessment of AI-Generated Images", IEEE TCSVT 2024
(arXiv:2312.05476, "Exploring the Naturalness of AI-Generated Images").
Original code: https://github.com/zijianchen98/AGIN (``JOINT/models/JOINT.py``,
``JOINT/utils/patch_partition.py``, ``JOINT/utils/AmbrosioTortorelliMinimizer.py``; no licence file
in the repository). Not in pyiqa: written here from the paper and the structure of that code.

Network (as upstream, module names kept so that its ``JOINT_2024.pth`` loads):

- technical branch: torchvision ``swin_t`` with its head replaced by the identity (768-d) →
  Linear(768, 128) → Linear(128, 1) (``quality_T``);
- rationality branch: torchvision ``resnet50`` with its 1000-way ``fc`` kept → Linear(1000, 128) →
  Linear(128, 1) (``quality_R``);
- no feature fusion; naturalness = 0.145·score_T + 0.769·score_R (upstream's test script).
  ``branch_scores`` returns both branch scores so that each can be trained on its own label.

Inputs, built inside the network from the [0, 1] image (upstream prepares them offline):

- technical: the image resized to ``input_size``² (224), cut into ``patch_size`` (32) patches and
  patches swapped with a neighbour, then, as upstream's test transform, resized to ``resize_size``
  (384) and centre-cropped to ``input_size``. Upstream swaps only patches that PAL4VST (a Swin-L
  UPerNet artifact-segmentation model, weights not available here) marks free of artifacts.
  **Fallback**: with no artifact mask every patch counts as artifact-free; ``shuffle_patches`` takes an
  optional mask of patches to keep in place for when one is available. The swap rule is upstream's:
  raster order, each patch not yet swapped is exchanged with a random 8-neighbour not yet swapped.
  In training the draw is random per image; in eval mode it is one fixed draw (seed 0) shared by all
  images, so test scores are deterministic and independent of the batch.
- rationality: the image smoothed by an Ambrosio–Tortorelli minimiser, each channel min-max
  rescaled to [0, 1] (as upstream's ``cv2.normalize``), then shorter side resized to ``resize_size``
  and centre-cropped to ``input_size``. Upstream alternates one conjugate-gradient solve (6 steps) of
  the edge equation and one of the image equation per channel with scipy; here
  :func:`ambrosio_tortorelli_smooth` does the same alternation with ``smooth_steps`` Jacobi sweeps per
  equation in torch (batched, on the model's device), with upstream's α = 1000, β = 0.01, ε = 0.01:
  edge field v: (α|∇f|² + β/4ε)·v − εβ·Δv = β/4ε (v ≈ 1 in flat regions, ≈ 0 across strong
  gradients), then image f: f − 2α·div(v² ∇f) = g, discretised on the 4-neighbour grid with link
  weights v² averaged over each link. Gradients in the edge equation are central differences
  f(x+1) − f(x−1), as upstream's [−1, 0, 1] filters.
- both inputs are normalised with ImageNet mean/std (upstream's transforms).

Training from random init: upstream starts from ImageNet weights (Swin_T_Weights.DEFAULT and
ResNet50_Weights.IMAGENET1K_V2); here both backbones are random and everything trains; nothing is
frozen upstream either. Small CPU profiles: ``input_size`` 128 and ``patch_size`` 16, a smaller Swin
(``swin_embed_dim``, ``swin_depths``; heads = channels/32 per stage, window 7) and ``resnet_depth`` 18.
The training loss is not published (upstream trains each branch on its MOS, then combines).

``pretrained_backbone=True``: the rationality branch — the CNN one; the technical branch is a Swin
transformer — is the ImageNet EfficientNet-Lite0 of a PyPI package in place of ResNet-50, with its
1000-way ImageNet classifier kept as upstream keeps ResNet-50's ``fc`` (so ``quality_R`` still reads 1000
logits), and its input normalised with Lite0's mean = std = 0.5. The Swin stays random. Everything trains,
as upstream fine-tunes its ImageNet backbones.

``pretrained=True``: ``weights_path`` is either upstream's full ``JOINT_2024.pth`` state dict (an
optional ``module.`` prefix is dropped), or torchvision's ImageNet ``swin_t`` or ``resnet50`` state
dict (recognised by its keys, loaded into that backbone; its classifier head is dropped for Swin).
``rationality_weights_path`` may name the second ImageNet file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer

from epaiqa.baselines.common import IMAGENET_MEAN, IMAGENET_STD, ScoreModel, load_state_dict_file
from epaiqa.baselines.lite0 import LITE0_MEAN, LITE0_STD, lite0_classifier
from epaiqa.baselines.offline import existing_file, strip_prefix
from epaiqa.baselines.registry import register_baseline
from epaiqa.errors import ConfigError

CITATION = "Chen et al., Study of Subjective and Objective Naturalness Assessment of AI-Generated Images, TCSVT 2024"
WEIGHT_T, WEIGHT_R = 0.145, 0.769
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def neighbour_swap_permutation(
    rows: int, cols: int, movable: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Source index of every patch after swapping each free patch with a random free 8-neighbour.

    Patches are visited in raster order; a patch that is movable and not yet swapped exchanges places
    with a random neighbour that is also movable and not yet swapped (upstream's rule). Returns a
    permutation ``perm`` of ``rows*cols`` indices: new patch k = old patch ``perm[k]``.
    """
    n = rows * cols
    free = [True] * n if movable is None else [bool(m) for m in movable.reshape(-1).tolist()]
    perm = list(range(n))
    for i in range(rows):
        for j in range(cols):
            k = i * cols + j
            if not free[k]:
                continue
            options = [
                (i + di) * cols + (j + dj)
                for di, dj in NEIGHBOURS
                if 0 <= i + di < rows and 0 <= j + dj < cols and free[(i + di) * cols + (j + dj)]
            ]
            if options:
                m = options[int(torch.randint(len(options), (1,), generator=generator))]
                perm[k], perm[m] = perm[m], perm[k]
                free[k] = free[m] = False
    return torch.tensor(perm)


def shuffle_patches(
    img: torch.Tensor,
    patch_size: int,
    movable: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    same_for_batch: bool = False,
) -> torch.Tensor:
    """Swap ``patch_size`` patches of ``img`` (B, C, H, W) with neighbours; pixels past the last full patch stay.

    ``movable``: optional bool mask (rows, cols) or (B, rows, cols) of patches free of artifacts (the
    others stay in place); None treats every patch as free. ``same_for_batch`` draws one permutation
    for the whole batch (used in eval mode with a fixed generator).
    """
    b, c, h, w = img.shape
    rows, cols = h // patch_size, w // patch_size
    if rows == 0 or cols == 0:
        return img
    if movable is not None and movable.dim() == 2:
        movable = movable.expand(b, rows, cols)
    if same_for_batch and movable is None:
        perms = neighbour_swap_permutation(rows, cols, None, generator).expand(b, -1)
    else:
        perms = torch.stack(
            [
                neighbour_swap_permutation(rows, cols, None if movable is None else movable[i], generator)
                for i in range(b)
            ]
        )
    hh, ww = rows * patch_size, cols * patch_size
    grid = img[:, :, :hh, :ww].reshape(b, c, rows, patch_size, cols, patch_size)
    patches = grid.permute(0, 2, 4, 1, 3, 5).reshape(b, rows * cols, c, patch_size, patch_size)
    patches = patches[torch.arange(b).unsqueeze(1), perms.to(img.device)]
    shuffled = patches.reshape(b, rows, cols, c, patch_size, patch_size).permute(0, 3, 1, 4, 2, 5).reshape(b, c, hh, ww)
    out = img.clone()
    out[:, :, :hh, :ww] = shuffled
    return out


def _neighbours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Up, down, left, right neighbours with replicated borders (zero-flux boundary)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:]


@torch.no_grad()
def ambrosio_tortorelli_smooth(
    img: torch.Tensor,
    iterations: int = 1,
    steps: int = 10,
    alpha: float = 1000.0,
    beta: float = 0.01,
    epsilon: float = 0.01,
    rescale: bool = True,
) -> torch.Tensor:
    """Edge-preserving smoothing of ``img`` (B, C, H, W) in [0, 1], every channel on its own.

    Alternates ``iterations`` times: ``steps`` Jacobi sweeps of the edge equation
    (α|∇f|² + β/4ε)·v − εβ·Δv = β/4ε, then ``steps`` Jacobi sweeps of the image equation
    f − 2α·div(v² ∇f) = g. ``rescale`` stretches each channel of each image to [0, 1] afterwards.
    """
    g = img.float()
    f = g
    diag_v, rhs_v, lap_v = beta / (4 * epsilon), beta / (4 * epsilon), epsilon * beta
    lam = 2 * alpha
    for _ in range(iterations):
        up, down, left, right = _neighbours(f)
        grad2 = (right - left) ** 2 + (down - up) ** 2
        denom_v = alpha * grad2 + diag_v + 4 * lap_v
        v = torch.ones_like(f)
        for _ in range(steps):
            vu, vd, vl, vr = _neighbours(v)
            v = (rhs_v + lap_v * (vu + vd + vl + vr)) / denom_v
        e = v**2
        eu, ed, el, er = _neighbours(e)
        links = [(e + eu) / 2, (e + ed) / 2, (e + el) / 2, (e + er) / 2]
        denom_f = 1 + lam * sum(links)
        for _ in range(steps):
            nbrs = _neighbours(f)
            f = (g + lam * sum(w * n for w, n in zip(links, nbrs, strict=True))) / denom_f
    if rescale:
        lo = f.amin(dim=(-2, -1), keepdim=True)
        hi = f.amax(dim=(-2, -1), keepdim=True)
        f = (f - lo) / (hi - lo).clamp_min(1e-6)
    return f.to(img.dtype)


def _resize_centre_crop(img: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """Shorter side to ``resize`` (bilinear, antialiased), then the central ``crop``² (torchvision's order)."""
    h, w = img.shape[-2:]
    scale = resize / min(h, w)
    size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    img = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
    return img[..., top : top + crop, left : left + crop]


def _swin(embed_dim: int, depths: Sequence[int]) -> nn.Module:
    if embed_dim == 96 and tuple(depths) == (2, 2, 6, 2):
        swin = torchvision.models.swin_t(weights=None)
    else:
        if embed_dim % 32:
            raise ValueError(f"JOINT swin_embed_dim must be a multiple of 32, got {embed_dim}")
        heads = [embed_dim // 32 * 2**i for i in range(len(depths))]
        swin = SwinTransformer(
            patch_size=[4, 4],
            embed_dim=embed_dim,
            depths=list(depths),
            num_heads=heads,
            window_size=[7, 7],
            stochastic_depth_prob=0.2,
        )
    swin.head = nn.Identity()
    return swin


def _regressor(in_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, 128), nn.Linear(128, 1))


class JOINT(nn.Module):
    """Technical (Swin on neighbour-shuffled patches) and rationality (ResNet on a smoothed image) branches."""

    def __init__(
        self,
        input_size: int = 224,
        patch_size: int = 32,
        resize_size: int | None = None,
        swin_embed_dim: int = 96,
        swin_depths: Sequence[int] = (2, 2, 6, 2),
        resnet_depth: int = 50,
        smooth_iterations: int = 1,
        smooth_steps: int = 10,
        weights: tuple[float, float] = (WEIGHT_T, WEIGHT_R),
        pretrained_backbone: bool = False,
    ) -> None:
        super().__init__()
        if resnet_depth not in (18, 34, 50, 101) and not pretrained_backbone:
            raise ValueError(f"JOINT resnet_depth must be 18, 34, 50 or 101, got {resnet_depth}")
        self.input_size, self.patch_size = input_size, patch_size
        self.resize_size = resize_size if resize_size is not None else round(input_size * 384 / 224)
        self.smooth_iterations, self.smooth_steps = smooth_iterations, smooth_steps
        self.weight_t, self.weight_r = weights
        self.technical_feature_extraction = _swin(swin_embed_dim, swin_depths)
        if pretrained_backbone:
            self.rationality_feature_extraction = lite0_classifier()
            r_mean, r_std = LITE0_MEAN, LITE0_STD
        else:
            self.rationality_feature_extraction = getattr(torchvision.models, f"resnet{resnet_depth}")(weights=None)
            r_mean, r_std = IMAGENET_MEAN, IMAGENET_STD
        self.quality_T = _regressor(swin_embed_dim * 2 ** (len(swin_depths) - 1))
        self.quality_R = _regressor(1000)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # the rationality branch's input normalisation (Lite0's when it is the backbone)
        self.register_buffer("r_mean", torch.tensor(r_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("r_std", torch.tensor(r_std).view(1, 3, 1, 1), persistent=False)

    def technical_input(self, img: torch.Tensor) -> torch.Tensor:
        """Resize to input_size², swap patches with neighbours, resize + centre crop, normalise."""
        x = F.interpolate(img, size=(self.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
        if self.training:
            x = shuffle_patches(x, self.patch_size)
        else:
            x = shuffle_patches(x, self.patch_size, generator=torch.Generator().manual_seed(0), same_for_batch=True)
        x = _resize_centre_crop(x, self.resize_size, self.input_size)
        return (x - self.mean) / self.std

    def rationality_input(self, img: torch.Tensor) -> torch.Tensor:
        """Ambrosio–Tortorelli smoothing, resize + centre crop, normalise."""
        x = ambrosio_tortorelli_smooth(img, iterations=self.smooth_iterations, steps=self.smooth_steps)
        x = _resize_centre_crop(x, self.resize_size, self.input_size)
        return (x - self.r_mean) / self.r_std

    def branch_scores(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 2): [technical score, rationality score]."""
        score_t = self.quality_T(self.technical_feature_extraction(self.technical_input(img)))
        score_r = self.quality_R(self.rationality_feature_extraction(self.rationality_input(img)))
        return torch.cat([score_t, score_r], dim=1)

    def combine(self, scores: torch.Tensor) -> torch.Tensor:
        """Naturalness (B,) from branch scores (B, 2)."""
        return self.weight_t * scores[:, 0] + self.weight_r * scores[:, 1]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.combine(self.branch_scores(img))

    def training_loss(
        self,
        img: torch.Tensor,
        ref: torch.Tensor | None,
        target: torch.Tensor,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Each branch trained on the label (the paper's MOS_tech / MOS_rat; one MOS here).

        The fixed combination of the branches predicts; it is not trained.
        """
        scores = self.branch_scores(img)
        return torch.stack([loss_fn(scores[:, i], target) for i in range(scores.shape[1])]).sum()


def _load(net: JOINT, path: str) -> None:
    state = strip_prefix(load_state_dict_file(path), "module.")
    if "head.weight" in state and any(k.startswith("features.") for k in state):  # torchvision ImageNet Swin
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        net.technical_feature_extraction.load_state_dict(state, strict=True)
    elif "fc.weight" in state and any(k.startswith("layer1.") for k in state):  # torchvision ImageNet ResNet
        net.rationality_feature_extraction.load_state_dict(state, strict=True)
    else:
        net.load_state_dict(state, strict=True)


@register_baseline(
    "joint",
    mode="NR",
    input_size=224,
    citation=CITATION,
    weights="JOINT_2024.pth (trained JOINT, linked from https://github.com/zijianchen98/AGIN README) or "
    "torchvision's ImageNet swin_t-704ceda3.pth / resnet50-11ad3fa6.pth",
    pretrained_backbone="the rationality branch (ImageNet Lite0 with its classifier instead of ResNet-50)",
    backbone_kwargs=("resnet_depth",),
)
def joint(
    pretrained: bool = False,
    weights_path: str | None = None,
    rationality_weights_path: str | None = None,
    input_size: int = 224,
    patch_size: int = 32,
    resize_size: int | None = None,
    swin_embed_dim: int = 96,
    swin_depths: Sequence[int] = (2, 2, 6, 2),
    resnet_depth: int = 50,
    smooth_iterations: int = 1,
    smooth_steps: int = 10,
    pretrained_backbone: bool = False,
) -> nn.Module:
    """JOINT; the defaults are the paper's (224² input, 32-px patches, swin_t + resnet50)."""
    if rationality_weights_path is not None:
        if not pretrained:
            raise ConfigError("rationality_weights_path is only read with pretrained=true")
        rationality_weights_path = existing_file(rationality_weights_path, "rationality_weights_path")
    net = JOINT(
        input_size=input_size,
        patch_size=patch_size,
        resize_size=resize_size,
        swin_embed_dim=swin_embed_dim,
        swin_depths=swin_depths,
        resnet_depth=resnet_depth,
        smooth_iterations=smooth_iterations,
        smooth_steps=smooth_steps,
        pretrained_backbone=pretrained_backbone,
    )
    if pretrained and weights_path is not None:
        _load(net, weights_path)
        if rationality_weights_path is not None:
            _load(net, rationality_weights_path)
    return ScoreModel(net, reference=False)
