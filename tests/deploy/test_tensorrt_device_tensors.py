"""TensorRT exchanges device tensors with torch: the engine reads the caller's input memory and writes the output
buffer that `run` returns, so nothing is copied between pre-processing, the engine and post-processing (checked
with the fake tensorrt module, whose engine reads and writes the bound addresses)."""
import torch

from synseg_core.deploy.backends.tensorrt import create_tensorrt_backend
from tensorrt_helpers import (EMBED_DIM, FAKE_GPU, SIZE, install_fake, ort_reference, small_config,  # noqa: F401
                              tiny_onnx)


def test_engine_binds_the_callers_tensors_and_returns_its_output_buffer(monkeypatch, tmp_path, tiny_onnx):
    install_fake(monkeypatch)
    backend = create_tensorrt_backend(tiny_onnx, ort_reference(tiny_onnx), small_config(tmp_path), device="cpu",
                                      device_info=FAKE_GPU)
    windows = torch.randn(5, 3, SIZE, SIZE)[1:3]  # a slice of a larger windows buffer, as the Segmenter passes
    text = torch.randn(3, EMBED_DIM)
    probs = backend.run(windows, text)
    bound = backend.runner._context.addresses
    assert bound["images"] == windows.data_ptr() and bound["text_embeddings"] == text.data_ptr()
    assert bound["probabilities"] == probs.data_ptr()
    torch.testing.assert_close(probs, ort_reference(tiny_onnx)().run(windows, text), atol=1e-5, rtol=0)


def test_categories_beyond_the_profile_run_in_chunks_on_views_of_the_text(monkeypatch, tmp_path, tiny_onnx):
    install_fake(monkeypatch)
    backend = create_tensorrt_backend(tiny_onnx, ort_reference(tiny_onnx), small_config(tmp_path), device="cpu",
                                      device_info=FAKE_GPU)
    text = torch.randn(7, EMBED_DIM)  # max_categories 5: chunks of 5 and 2
    addresses = []
    execute = type(backend.runner._context).execute_async_v3

    def record(context, stream):
        addresses.append(context.addresses["text_embeddings"])
        return execute(context, stream)

    monkeypatch.setattr(type(backend.runner._context), "execute_async_v3", record)
    images = torch.randn(1, 3, SIZE, SIZE)
    probs = backend.run(images, text)
    assert addresses == [text.data_ptr(), text[5:].data_ptr()]
    torch.testing.assert_close(probs, ort_reference(tiny_onnx)().run(images, text), atol=1e-5, rtol=0)
