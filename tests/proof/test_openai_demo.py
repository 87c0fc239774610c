"""The demo's --openai preparation, offline: a tiny random-weight open_clip config, a random Hugging Face CLIPSeg
state dict on disk and local photos stand in for ViT-B/16 `openai`, CIDAS/clipseg-rd64-refined and COCO photos."""
import pytest
import torch
import yaml

from synseg_core import Segmenter
from synseg_core.model.checkpoint import load_checkpoint
from synseg_proof.demo_assets import read_demo_frames
from synseg_proof.cli import make_openai_demo

pytest.importorskip("transformers")


def test_prepares_a_clipseg_checkpoint_photos_and_node_parameters(tmp_path, clipseg_file, photos):
    from safetensors.torch import load_file

    assert make_openai_demo.main(["--out", str(tmp_path), "--model-config", "tiny-test", "--clipseg", str(clipseg_file),
                                  "--photos-dir", str(photos), "--query", "cup, table"]) == 0
    model = load_checkpoint(tmp_path / "model")
    hf = load_file(str(clipseg_file))
    for name, value in model.decoder.state_dict().items():
        assert torch.equal(value, hf[f"decoder.{name}"])
    frames = read_demo_frames(tmp_path / "frames")
    assert frames.query == ["cup", "table"] and len(frames.images) == 2 and frames.labels is None
    params = yaml.safe_load((tmp_path / "node_params.yaml").read_text())["/**"]["ros__parameters"]
    assert params["short_side"] == model.cfg.inference.short_side
    Segmenter.from_checkpoint(tmp_path / "model").segment(frames.images[0], frames.query)


def test_missing_photos_and_failed_downloads_are_clear_errors(tmp_path, clipseg_file, capsys):
    (tmp_path / "empty").mkdir()
    base = ["--model-config", "tiny-test", "--clipseg", str(clipseg_file)]
    assert make_openai_demo.main(["--out", str(tmp_path / "a"), *base, "--photos-dir", str(tmp_path / "empty")]) == 2
    assert "holds no .png/.jpg/.jpeg photos" in capsys.readouterr().err
    assert make_openai_demo.main(["--out", str(tmp_path / "b"), *base, "--photos", "http://127.0.0.1:9/x.jpg"]) == 2
    assert "cannot download http://127.0.0.1:9/x.jpg" in capsys.readouterr().err
    assert make_openai_demo.main(["--out", str(tmp_path / "c"), "--model-config", "tiny-test", "--clipseg",
                                  str(tmp_path / "nope.safetensors"), "--photos-dir", str(tmp_path)]) == 2
    assert "CLIPSeg weights not found" in capsys.readouterr().err
