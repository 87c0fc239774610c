"""scripts/demo.sh, the main job, end to end: the real node (console script) over DDS with the bundled demo model,
the player publishing frames and a query, overlays and label images saved, latency printed, a clean exit; and
--model with a pretrained model's name on a folder of photos (a small random-weight CLIPSeg converted into the
model folder, offline)."""
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synseg_core import create_model, save_checkpoint
from synseg_core.model.cli import main as synseg_model
from synseg_core.model.hub import MODEL_DIR_ENV
from synseg_core.evaluation.datasets import read_label
from synseg_proof.demo_assets import DEMO_DIR, read_demo_frames, write_demo_frames, write_node_params
from synseg_ros.demo_player import resized
from tests.model.clipseg_files import SMALL_CLIPSEG, SMALL_OUTPUT_SCALE, build_clipseg

REPO = Path(__file__).resolve().parents[2]
SHORT_FRAMES = 3
TIMEOUT_S = 600

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _demo(out: Path, *extra: str, domain_offset: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROS_DOMAIN_ID": str(100 + (os.getpid() + domain_offset) % 100),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    return subprocess.run(["bash", str(REPO / "scripts" / "demo.sh"), "--short", "--out", str(out), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_short_demo_masks_cover_the_queried_objects(tmp_path):
    assert (DEMO_DIR / "model" / "config.json").is_file(), "the bundled demo model is missing"
    run = _demo(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    frames = resized(read_demo_frames(DEMO_DIR / "frames"), (640, 480))  # the player sends camera-size frames
    names = frames.names[:SHORT_FRAMES]
    assert re.findall(r"frame (\S+): [\d.]+ ms", run.stdout) == names
    assert f"summary: {SHORT_FRAMES}/{SHORT_FRAMES} frames" in run.stdout
    inter = union = 0
    for name, image, truth in zip(names, frames.images, frames.labels):
        predicted = read_label(tmp_path / "labels" / f"{name}.png")
        overlay = np.asarray(Image.open(tmp_path / "overlay" / f"{name}.png"))
        assert predicted.shape == truth.shape and overlay.shape == image.shape
        assert not np.array_equal(overlay, image)  # the masks are drawn
        inter += np.sum((predicted > 0) & (truth > 0))
        union += np.sum((predicted > 0) | (truth > 0))
    assert inter / union >= 0.5, f"foreground IoU {inter / union:.3f} of the demo's label images vs ground truth"


def test_model_mode_runs_a_pretrained_model_by_name_on_photos(tmp_path, photos, monkeypatch):
    repo = tmp_path / "repo"
    build_clipseg(repo, output_scale=SMALL_OUTPUT_SCALE, **SMALL_CLIPSEG)
    assert synseg_model(["import-clipseg", "--weights", str(repo / "model.safetensors"), "--config",
                         str(repo / "config.json"), "--out", str(tmp_path / "models")]) == 0
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # converted already: nothing is fetched
    run = _demo(tmp_path / "out", "--model", "clipseg-rd64-refined", "--photos", str(photos), domain_offset=1)
    assert run.returncode == 0, run.stdout + run.stderr
    written = sorted(p.name for p in (tmp_path / "out" / "overlay").iterdir())
    assert written == sorted(p.name.replace(".jpg", ".png") for p in photos.iterdir())
    assert "summary: 2/2 frames" in run.stdout
    assert "mask_threshold 0.5 (checkpoint)" in (tmp_path / "out" / "node.log").read_text()


def test_model_mode_without_photos_or_model_exits_2(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = _demo(tmp_path / "a", "--model", "clipseg-rd64-refined")
    assert run.returncode == 2 and "--model needs --photos DIR" in run.stderr
    (tmp_path / "photos").mkdir()
    run = _demo(tmp_path / "b", "--model", "clipseg-rd64-refined", "--photos", str(tmp_path / "photos"))
    assert run.returncode == 2 and "synseg-model download clipseg-rd64-refined --out DIR" in run.stderr


def test_a_model_that_does_not_load_fails_fast_with_the_nodes_error(tmp_path):
    demo = tmp_path / "demo"
    write_demo_frames(demo / "frames", ["red circle"], 1, 64, seed=1)
    torch.manual_seed(0)
    save_checkpoint(create_model("tiny-test"), demo / "model")
    write_node_params(demo / "node_params.yaml", demo / "model")
    (demo / "model" / "model.safetensors").write_bytes(b"truncated")
    run = _demo(tmp_path / "out", "--demo", str(demo), domain_offset=2)
    assert run.returncode == 1
    assert "is 'unconfigured' after start-up" in run.stderr and "cannot load model" in run.stderr
