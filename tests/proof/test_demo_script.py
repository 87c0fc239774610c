"""scripts/demo.sh, the main job, end to end: the real node (console script) over DDS with the bundled demo model,
the player publishing frames and a query, overlays and label images saved, latency printed, a clean exit; and
the --openai path offline (tiny random-weight CLIP, random CLIPSeg decoder, local photos)."""
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synseg_core import create_model, save_checkpoint
from synseg_core.evaluation.datasets import read_label
from synseg_proof.demo_assets import DEMO_DIR, read_demo_frames, write_demo_frames, write_node_params

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
    frames = read_demo_frames(DEMO_DIR / "frames")
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


def test_openai_mode_runs_offline_with_random_weight_models(tmp_path, clipseg_file, photos):
    run = _demo(tmp_path, "--openai", "--model-config", "tiny-test", "--clipseg", str(clipseg_file),
                "--photos-dir", str(photos), domain_offset=1)
    assert run.returncode == 0, run.stdout + run.stderr
    written = sorted(p.name for p in (tmp_path / "overlay").iterdir())
    assert written == ["photo_00.png", "photo_01.png"]
    assert (tmp_path / "assets" / "model" / "config.json").is_file()
    assert "summary: 2/2 frames" in run.stdout


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
