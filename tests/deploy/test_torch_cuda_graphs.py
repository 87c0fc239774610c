"""The torch backend's CUDA graphs: replays equal the eager forward, new inputs of a captured shape are the ones
used, a new shape captures again, the oldest graph goes past max_graphs, and a capture that fails or disagrees
leaves the backend eager with a logged reason. The caching and fallback logic runs on the CPU with a stand-in for
the capture; the real graphs need a CUDA GPU."""
import logging

import pytest
import torch

from synseg_core.deploy.backends import torch_backend
from synseg_core.deploy.backends.base import BackendError
from synseg_core.deploy.backends.torch_backend import TorchBackend

SIZE = 64


def inputs(batch, categories, model, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, SIZE, SIZE, generator=g),
            torch.randn(categories, model.backbone.embed_dim, generator=g))


def test_cuda_graphs_are_ignored_on_the_cpu(tiny_model):
    backend = TorchBackend(tiny_model, cuda_graphs=True)
    assert not backend.cuda_graphs and backend.thread_safe


def test_max_graphs_must_be_positive(tiny_model):
    with pytest.raises(BackendError, match="max_graphs must be >= 1, got 0"):
        TorchBackend(tiny_model, max_graphs=0)


class StandInCapture:
    """Records captures; `offset` makes its replays disagree with the eager forward, `fail` makes capture raise."""

    made, offset, fail = [], 0.0, False

    def __init__(self, forward, images, text):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.forward = forward
        StandInCapture.made.append((tuple(images.shape), tuple(text.shape)))

    def __call__(self, images, text):
        return self.forward(images, text) + self.offset


@pytest.fixture
def graphed_on_cpu(tiny_model, monkeypatch):
    """A CPU backend whose graph path is on, with the stand-in capture."""
    monkeypatch.setattr(torch_backend, "CapturedForward", StandInCapture)
    monkeypatch.setattr(StandInCapture, "made", [])
    backend = TorchBackend(tiny_model, max_graphs=2)
    backend.cuda_graphs = True
    return backend


def test_one_capture_per_shape_and_the_oldest_shape_is_dropped(graphed_on_cpu, tiny_model):
    eager = TorchBackend(tiny_model)
    shapes = [(1, 3), (1, 3), (2, 3), (1, 5), (1, 3)]
    for seed, (batch, categories) in enumerate(shapes):
        images, text = inputs(batch, categories, tiny_model, seed)
        torch.testing.assert_close(graphed_on_cpu.run(images, text), eager.run(images, text))
    d = tiny_model.backbone.embed_dim
    image = lambda b: (b, 3, SIZE, SIZE)  # noqa: E731
    # (1, 3) captured once while kept; dropped by (1, 5) as the oldest of two, so captured again at the end
    assert StandInCapture.made == [(image(1), (3, d)), (image(2), (3, d)), (image(1), (5, d)), (image(1), (3, d))]
    assert list(graphed_on_cpu._graphs) == [(image(1), (5, d)), (image(1), (3, d))]


@pytest.mark.parametrize("fault", ["fail", "offset"])
def test_a_failing_or_disagreeing_capture_leaves_the_backend_eager(graphed_on_cpu, tiny_model, monkeypatch, caplog,
                                                                   fault):
    monkeypatch.setattr(StandInCapture, fault, True if fault == "fail" else 0.5)
    images, text = inputs(1, 3, tiny_model, 0)
    with caplog.at_level(logging.WARNING, logger=torch_backend.__name__):
        got = graphed_on_cpu.run(images, text)
    torch.testing.assert_close(got, TorchBackend(tiny_model).run(images, text))
    expected = "stream is capturing" if fault == "fail" else "replay differs from the eager forward by 5.00e-01"
    assert "running eagerly from now on" in caplog.text and expected in caplog.text
    assert not graphed_on_cpu.cuda_graphs and not graphed_on_cpu._graphs
    graphed_on_cpu.run(images, text)
    assert len(StandInCapture.made) == (0 if fault == "fail" else 1)  # no second try


needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("precision", [pytest.param(p, marks=needs_cuda) for p in ("fp32", "fp16")])
def test_real_graph_replays_equal_eager_on_cuda(tiny_model, precision):
    eager = TorchBackend(tiny_model, "cuda", precision, cuda_graphs=False)
    graphed = TorchBackend(tiny_model, "cuda", precision, max_graphs=2)
    assert not graphed.thread_safe
    for seed, (batch, categories) in enumerate([(1, 3), (1, 3), (2, 3), (1, 5)]):
        images, text = inputs(batch, categories, tiny_model, seed)
        torch.testing.assert_close(graphed.run(images, text), eager.run(images, text), rtol=0, atol=1e-4)
    assert graphed.cuda_graphs and len(graphed._graphs) == 2  # no capture fell back to eager
