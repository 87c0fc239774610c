"""The training engine every loop shares: clipping and the skipped non-finite step, the state a resumed run
restores (bit-exact continuation), autocast, and the trainer-state file of loops without a SynSeg checkpoint."""
import math

import pytest
import torch

from synseg_core.training.config import OptimConfig, ScheduleConfig
from synseg_core.training.engine import TrainingEngine
from synseg_core.training.state import write_trainer_state
from synseg_core.training.precision import MixedPrecision
from synseg_core.training.state import STATE_NAME, load_trainer_state

CPU = torch.device("cpu")


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 1))


def _engine(model: torch.nn.Module, precision: str = "fp32", clip: float | None = 1.0) -> TrainingEngine:
    optim = OptimConfig(lr=1e-2, projector_lr=1e-2, weight_decay=0.1, grad_clip_norm=clip)
    return TrainingEngine(dict(model.named_parameters()), optim, ScheduleConfig(max_steps=20, warmup_steps=2,
                                                                                min_lr=1e-4),
                          MixedPrecision(precision, CPU), part="net")


def _step(model: torch.nn.Module, engine: TrainingEngine, seed: int) -> tuple[float, bool]:
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(seed))
    with engine.autocast():
        loss = model(x).float().pow(2).mean() * 100
    result = engine.apply(loss)
    engine.scheduler.step()
    return result


def test_apply_returns_the_unclipped_norm_and_clips_the_update():
    model, reference = _model(), _model()
    engine = _engine(model, clip=1e-3)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    reference(x).pow(2).mean().mul(100).backward()
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()]))
    grad_norm, applied = engine.apply(model(x).pow(2).mean() * 100)
    assert applied and grad_norm == pytest.approx(float(expected), rel=1e-5) and grad_norm > 1e-3
    assert all(p.grad is None for p in model.parameters())  # cleared for the next step
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))
    assert [g["name"] for g in engine.optimizer.param_groups] == ["net_no_decay", "net"]


def test_a_non_finite_gradient_leaves_the_weights_alone():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    engine = _engine(model)
    grad_norm, applied = engine.apply(model(torch.ones(2, 4)).sum() * torch.tensor(math.inf))
    assert not applied and not math.isfinite(grad_norm)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_continues_a_run_exactly(tmp_path):
    straight, split = _model(), _model()
    engine_a, engine_b = _engine(straight), _engine(split)
    for seed in range(3):
        _step(straight, engine_a, seed)
        _step(split, engine_b, seed)
    write_trainer_state(tmp_path, {"step": 3, "model": split.state_dict(), **engine_b.state_dict()})
    assert [p.name for p in tmp_path.iterdir()] == [STATE_NAME]  # no temporary left behind
    state = load_trainer_state(tmp_path)
    resumed = _model(seed=5)
    resumed.load_state_dict(state["model"])
    engine_c = _engine(resumed)
    engine_c.load_state_dict(state)
    assert engine_c.lr() == engine_a.lr() != engine_c.optimizer.param_groups[0]["initial_lr"]
    for seed in range(3, 6):
        _step(straight, engine_a, seed)
        _step(resumed, engine_c, seed)
    assert all(torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))


def test_autocast_follows_the_precision():
    model = _model()
    with _engine(model, "bf16").autocast():
        assert model(torch.ones(2, 4)).dtype == torch.bfloat16
    with _engine(model, "fp32").autocast():
        assert model(torch.ones(2, 4)).dtype == torch.float32
