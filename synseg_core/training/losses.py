"""Multi-Category Contrastive Learning (docs/method.md §6): the four MCCL terms, per image, averaged over the batch."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import LossConfig
from ..model.synseg import TrainOutput


@dataclass
class MCCLTerms:
    """Each term is the batch mean of per-image values (scalars); `total` is the λ-weighted sum."""

    total: torch.Tensor
    align: torch.Tensor
    cont: torch.Tensor
    back: torch.Tensor
    sep: torch.Tensor
    area: torch.Tensor
    absent: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


def _clip(cos: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """clip(cos, clip_min, clip_max); `straight_through` keeps the identity gradient outside the range."""
    clipped = cos.clamp(cfg.clip_min, cfg.clip_max)
    return cos + (clipped - cos).detach() if cfg.clamp == "straight_through" else clipped


def clipped_cosine(u: torch.Tensor, v: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """s(u, v) row by row: [M, D], [M, D] -> [M]."""
    return _clip(F.cosine_similarity(u, v, dim=-1), cfg)


def _pairwise_clipped(x: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """s(x_j, x_k) for all pairs: [M, D] -> [M, M]."""
    xn = F.normalize(x, dim=-1)
    return _clip(xn @ xn.T, cfg)


def per_image_mean(values: torch.Tensor, owner: torch.Tensor, n_images: int) -> torch.Tensor:
    """Mean of per-pair values within each image: [M] -> [n_images] (images without pairs give 0)."""
    sums = torch.zeros(n_images, dtype=values.dtype, device=values.device).index_add(0, owner, values)
    counts = torch.bincount(owner, minlength=n_images).to(values.dtype)
    return sums / counts.clamp(min=1)


def mccl_loss(fg: torch.Tensor, bg: torch.Tensor, text: torch.Tensor, owner: torch.Tensor, n_images: int,
              cfg: LossConfig, maps: torch.Tensor | None = None, absent_maps: torch.Tensor | None = None,
              absent_owner: torch.Tensor | None = None) -> MCCLTerms:
    """MCCL over M (image, category) pairs.

    Args:
        fg, bg: foreground / background synergy features [M, D].
        text: text embeddings t_c [M, D].
        owner: image index of each pair [M] (long); image b has N_b pairs.
        n_images: number of images B (images with no pairs are left out of the batch mean).
        maps: activation maps A [M, H, W], needed only for the area extension.
        absent_maps, absent_owner: maps of categories other images mention but not this one (absent extension).
    Returns:
        Batch means of L_align, L_cont, L_back, L_sep (pair sums over j != k divided by N_b², as the spec says) and the
        extension terms.
    """
    counts = torch.bincount(owner, minlength=n_images).to(fg.dtype)  # N_b
    present = counts > 0
    align = per_image_mean(-torch.log(clipped_cosine(fg, text, cfg)), owner, n_images)
    cont = per_image_mean(-torch.log(1 - clipped_cosine(fg, bg, cfg)), owner, n_images)

    same = owner[:, None] == owner[None, :]
    off_diag = same & ~torch.eye(len(owner), dtype=torch.bool, device=owner.device)
    n_sq = counts.clamp(min=1).square()

    def pair_term(values: torch.Tensor) -> torch.Tensor:  # [M, M] -> per image sum over j != k / N_b²
        row_sums = (values * off_diag).sum(dim=1)
        return torch.zeros(n_images, dtype=values.dtype, device=values.device).index_add(0, owner, row_sums) / n_sq

    back = pair_term(-torch.log(_pairwise_clipped(bg, cfg)))
    sep = pair_term(-torch.log(1 - _pairwise_clipped(fg, cfg)))

    zero = fg.new_zeros(n_images)
    area = zero
    if cfg.area_weight > 0 and maps is not None:
        shortfall = F.relu(cfg.area_target - maps.flatten(1).mean(dim=1))
        area = per_image_mean(shortfall, owner, n_images)
    absent = zero
    if cfg.absent_weight > 0 and absent_maps is not None and len(absent_maps):
        absent = per_image_mean(absent_maps.flatten(1).mean(dim=1), absent_owner, n_images)

    def batch_mean(x: torch.Tensor) -> torch.Tensor:
        return x[present].mean()

    terms = {name: batch_mean(v) for name, v in
             dict(align=align, cont=cont, back=back, sep=sep, area=area, absent=absent).items()}
    total = (cfg.align_weight * terms["align"] + cfg.cont_weight * terms["cont"] + cfg.back_weight * terms["back"]
             + cfg.sep_weight * terms["sep"] + cfg.area_weight * terms["area"] + cfg.absent_weight * terms["absent"])
    return MCCLTerms(total=total, **terms)


def synseg_loss(out: TrainOutput, text: torch.Tensor, owner: torch.Tensor, n_images: int, cfg: LossConfig,
                absent_owner: torch.Tensor | None = None) -> MCCLTerms:
    """MCCL of one `SynSeg.forward_train` output; `text` [M, D] are the caption categories' embeddings."""
    return mccl_loss(out.foreground.float(), out.background.float(), text.float(), owner, n_images, cfg,
                     maps=out.maps, absent_maps=out.absent_maps, absent_owner=absent_owner)
