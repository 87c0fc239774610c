"""MCCL terms against plain-loop references on small hand-made features."""
import math

import pytest
import torch

from synseg_core.config import LossConfig
from synseg_core.training.losses import mccl_loss


def _s(u, v, lo=0.005, hi=0.995):
    cos = float(torch.dot(u, v) / (u.norm() * v.norm()))
    return min(max(cos, lo), hi)


def _reference(fg, bg, text, owner, n_images):
    """Per image: align/cont means over i; back/sep sums over j != k divided by N²; then the mean over images."""
    per = {"align": [], "cont": [], "back": [], "sep": []}
    for b in range(n_images):
        idx = [i for i in range(len(owner)) if owner[i] == b]
        n = len(idx)
        if n == 0:
            continue
        per["align"].append(-sum(math.log(_s(fg[i], text[i])) for i in idx) / n)
        per["cont"].append(-sum(math.log(1 - _s(fg[i], bg[i])) for i in idx) / n)
        back = sep = 0.0
        for j in idx:
            for k in idx:
                if j != k:
                    back -= math.log(_s(bg[j], bg[k]))
                    sep -= math.log(1 - _s(fg[j], fg[k]))
        per["back"].append(back / n ** 2)
        per["sep"].append(sep / n ** 2)
    return {k: sum(v) / len(v) for k, v in per.items()}


@pytest.mark.parametrize("counts", [[1], [4], [1, 4, 2], [3, 0, 2]])
def test_terms_match_loop_reference(counts):
    torch.manual_seed(sum(counts))
    owner = torch.tensor([b for b, n in enumerate(counts) for _ in range(n)])
    m, d = len(owner), 6
    fg, bg, text = torch.randn(m, d), torch.randn(m, d), torch.randn(m, d)
    got = mccl_loss(fg, bg, text, owner, len(counts), LossConfig())
    ref = _reference(fg, bg, text, owner.tolist(), len(counts))
    for name, value in ref.items():
        assert float(getattr(got, name)) == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert float(got.total) == pytest.approx(sum(ref.values()), rel=1e-5)


def test_single_category_image_has_no_pair_terms():
    fg, bg, text = torch.randn(1, 4), torch.randn(1, 4), torch.randn(1, 4)
    out = mccl_loss(fg, bg, text, torch.tensor([0]), 1, LossConfig())
    assert float(out.back) == 0.0 and float(out.sep) == 0.0


def test_clipping_edges():
    """Identical vectors clip to 0.995, opposite ones to 0.005; hard clipping gives no gradient there,
    the straight-through clamp does."""
    v = torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    opposite = torch.tensor([[-1.0, 0.0], [-1.0, 0.0]])
    owner = torch.tensor([0, 0])
    out = mccl_loss(v, opposite, opposite, owner, 1, LossConfig())
    assert float(out.align) == pytest.approx(-math.log(0.005), rel=1e-6)  # cos = -1 -> 0.005
    assert float(out.cont) == pytest.approx(-math.log(1 - 0.005), rel=1e-6)
    assert float(out.sep) == pytest.approx(-2 * math.log(1 - 0.995) / 4, rel=1e-5)  # two ordered pairs / N²
    assert float(out.back) == pytest.approx(-2 * math.log(0.995) / 4, rel=1e-5)
    out.total.backward()
    assert v.grad is None or torch.count_nonzero(v.grad) == 0
    v2 = v.detach().clone().requires_grad_(True)
    st = mccl_loss(v2 + 0.1 * torch.tensor([[0.0, 1.0], [0.0, -1.0]]), opposite, opposite, owner, 1,
                   LossConfig(clamp="straight_through"))
    st.total.backward()
    assert torch.count_nonzero(v2.grad) > 0


def test_weights_and_extensions():
    torch.manual_seed(0)
    fg, bg, text = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 5)
    owner = torch.tensor([0, 0, 1])
    cfg = LossConfig(align_weight=2.0, cont_weight=0.0, back_weight=0.5, sep_weight=1.0, area_weight=1.0,
                     area_target=0.2, absent_weight=3.0)
    maps = torch.full((3, 4, 4), 0.05)
    absent = torch.full((2, 4, 4), 0.4)
    out = mccl_loss(fg, bg, text, owner, 2, cfg, maps=maps, absent_maps=absent, absent_owner=torch.tensor([0, 1]))
    assert float(out.area) == pytest.approx(0.15, rel=1e-5)
    assert float(out.absent) == pytest.approx(0.4, rel=1e-5)
    expected = 2 * out.align + 0.5 * out.back + out.sep + out.area + 3 * out.absent
    assert float(out.total) == pytest.approx(float(expected), rel=1e-6)
