"""Check a fresh engine against a reference backend before it is trusted.

TensorRT can build engines that run but compute wrong results (Myelin fusions, fp16 overflow in LayerNorm and
softmax; see shared/tensorrt_notes.md section 9), so every fresh engine is compared with ONNX Runtime or
PyTorch at the profile's min, opt and max shapes on random inputs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from ..base import ImagePathBackend
from .errors import EngineVerificationError

log = logging.getLogger(__name__)

ImagePathFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CheckPoint:
    """One verification shape: image batch size and category count."""

    batch: int
    categories: int


def check_points(batch_range: tuple[int, int, int], category_range: tuple[int, int, int]) -> list[CheckPoint]:
    """(min, min), (opt, opt), (max, max) of the two profile ranges, without repeats."""
    points: list[CheckPoint] = []
    for batch, categories in zip(batch_range, category_range):
        point = CheckPoint(batch, categories)
        if point not in points:
            points.append(point)
    return points


def verify_engine(candidate: ImagePathFn, reference: ImagePathBackend, points: list[CheckPoint], *,
                  input_size: int, embed_dim: int, mean_abs: float, max_abs: float, seed: int) -> dict:
    """Compare `candidate` with `reference` at each point.

    Args:
        candidate: images [B, 3, S, S], text [K, D] -> probabilities [B, K, S, S] (the engine under test).
        reference: a trusted backend (ONNX Runtime or PyTorch, fp32).
        mean_abs, max_abs: largest allowed mean and max of |candidate - reference| at one point.

    Returns:
        A report {"passed": True, "reference": ..., "allowed": {...}, "points": [...]}.

    Raises:
        EngineVerificationError: some output is not finite or differs by more than allowed (report attached).
    """
    generator = torch.Generator().manual_seed(seed)
    results = []
    for point in points:
        images = torch.randn(point.batch, 3, input_size, input_size, generator=generator)
        text = torch.nn.functional.normalize(torch.randn(point.categories, embed_dim, generator=generator), dim=-1)
        got = candidate(images, text).detach().float().cpu()
        want = reference.run(images.to(reference.device), text.to(reference.device)).detach().float().cpu()
        if got.shape != want.shape:
            raise EngineVerificationError(f"engine output shape {tuple(got.shape)} differs from the reference's "
                                          f"{tuple(want.shape)} at {point}", {"passed": False})
        difference = (got - want).abs()
        results.append({"batch": point.batch, "categories": point.categories,
                        "finite": bool(torch.isfinite(got).all()), "max_abs": float(difference.max()),
                        "mean_abs": float(difference.mean())})
    report = {"reference": f"{reference.name} ({reference.precision}, {reference.device})",
              "allowed": {"mean_abs": mean_abs, "max_abs": max_abs}, "points": results}
    failing = [r for r in results if not (r["finite"] and r["mean_abs"] <= mean_abs and r["max_abs"] <= max_abs)]
    report["passed"] = not failing
    if failing:
        raise EngineVerificationError(
            "engine outputs disagree with the reference " + report["reference"] + ": " + "; ".join(
                f"B={r['batch']} K={r['categories']}: mean |diff| {r['mean_abs']:.3g}, max |diff| "
                f"{r['max_abs']:.3g}" + ("" if r["finite"] else ", non-finite outputs") for r in failing)
            + f" (allowed mean {mean_abs:.3g}, max {max_abs:.3g})", report)
    log.info("engine verified against %s: mean |diff| <= %.3g, max |diff| %.3g", report["reference"],
             max(r["mean_abs"] for r in results), max(r["max_abs"] for r in results))
    return report
