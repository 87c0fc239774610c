"""Demo assets: generated frames hold only query objects with matching ground truth, frames read back, frame scores,
the float16 demo-model export loads and predicts like the original, and the node parameters it writes validate."""
import json

import numpy as np
import pytest
import torch
import yaml

from synseg_core import Segmenter, create_model, save_checkpoint
from synseg_proof.demo_assets import (DEMO_DIR, choose_inference, export_demo_model, read_demo_frames,
                                           score_frames, write_demo_frames, write_node_params)
from synseg_proof.synthetic import COLOURS
from synseg_proof.synthetic.vocabulary import split_thing_category

QUERY = ("red circle", "blue square", "green star", "yellow triangle", "purple circle", "orange cross")


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    return write_demo_frames(tmp_path_factory.mktemp("demo") / "frames", QUERY, 4, 64, seed=11)


def test_frames_hold_only_query_objects_labelled_with_their_query_ids(frames_dir):
    frames = read_demo_frames(frames_dir)
    assert frames.query == list(QUERY) and frames.classes == ["background", *QUERY] and len(frames.names) == 4
    palette = {name: np.array(rgb, dtype=float) for name, rgb in COLOURS.items()}
    for image, label in zip(frames.images, frames.labels):
        ids = set(np.unique(label).tolist()) - {0}
        assert ids and ids <= set(range(1, len(QUERY) + 1))
        for k in ids:  # the pixels labelled k have the colour that category k names
            mean = image[label == k].astype(float).mean(axis=0)
            nearest = min(palette, key=lambda c: np.abs(palette[c] - mean).sum())
            assert nearest == split_thing_category(QUERY[k - 1])[0]


def test_frames_are_deterministic(frames_dir, tmp_path):
    again = write_demo_frames(tmp_path / "again", QUERY, 4, 64, seed=11)
    for sub in ("images", "labels"):
        for path in sorted((frames_dir / sub).iterdir()):
            assert path.read_bytes() == (again / sub / path.name).read_bytes()


def test_frame_folders_without_labels_and_bad_folders(frames_dir, tmp_path):
    photos = tmp_path / "photos"
    (photos / "images").mkdir(parents=True)
    (photos / "images" / "x.png").write_bytes((frames_dir / "images" / "frame_000.png").read_bytes())
    plain = read_demo_frames(photos)
    assert plain.labels is None and plain.query == [] and plain.names == ["x"]
    with pytest.raises(ValueError, match="holds no"):
        read_demo_frames(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"\['grass'\]; the frames' query must list thing categories"):
        write_demo_frames(tmp_path / "none", ["red circle", "grass"], 1, 64, seed=1)
    with pytest.raises(ValueError, match="'red star'.*domain 'source'"):
        write_demo_frames(tmp_path / "none", ["red star"], 1, 64, seed=1, domain="source")


def test_frame_scores(frames_dir):
    frames = read_demo_frames(frames_dir)
    perfect = score_frames(frames.labels, frames.labels, len(frames.classes))
    assert perfect["foreground_iou"] == 1.0 and perfect["miou"] == 1.0 and perfect["frames"] == 4
    nothing = score_frames([np.zeros_like(lab) for lab in frames.labels], frames.labels, len(frames.classes))
    assert nothing["foreground_iou"] == 0.0


def test_demo_export_is_float16_loads_as_a_checkpoint_and_keeps_the_threshold(tmp_path, frames_dir):
    torch.manual_seed(0)
    model = create_model("tiny-test")
    save_checkpoint(model, tmp_path / "source")
    out = export_demo_model(tmp_path / "source", tmp_path / "demo", 96, 0.35, {"recipe": "test"})
    meta = json.loads((out / "config.json").read_text())
    assert meta["extra"] == {"recipe": "test"} and meta["config"]["inference"]["background_threshold"] == 0.35
    assert meta["config"]["inference"]["short_side"] == 96 and meta["config"]["inference"]["window"] is None
    from safetensors.torch import load_file
    assert {v.dtype for v in load_file(str(out / "model.safetensors")).values()} == {torch.float16}
    original, exported = Segmenter.from_checkpoint(tmp_path / "source"), Segmenter.from_checkpoint(out)
    image = read_demo_frames(frames_dir).images[0]
    original.inference = exported.inference
    a = original.segment_probabilities([image], list(QUERY[:2]))[0]
    b = exported.segment_probabilities([image], list(QUERY[:2]))[0]
    torch.testing.assert_close(a, b, atol=2e-2, rtol=0)
    assert exported.inference.background_threshold == 0.35


def test_node_parameters_of_the_demo_validate(tmp_path):
    parameters = pytest.importorskip("synseg_ros.parameters")
    torch.manual_seed(0)
    save_checkpoint(create_model("tiny-test"), tmp_path / "model")
    path = write_node_params(tmp_path / "params.yaml", tmp_path / "model")
    values = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
    params = parameters.parameters_from_values(values)
    inference = create_model("tiny-test").cfg.inference
    assert params.window == inference.window and params.short_side == inference.short_side
    assert params.categories == "" and params.image_reliability == "reliable"


def test_the_bundled_demo_model_loads_and_fits_the_size_budget():
    if not (DEMO_DIR / "model" / "config.json").is_file():
        pytest.skip("the bundled demo model is not committed yet (synseg_proof/cli/make_demo_assets.py)")
    total = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file() and p.suffix == ".safetensors")
    assert total < 20 * 1024 * 1024
    segmenter = Segmenter.from_checkpoint(DEMO_DIR / "model")
    frames = read_demo_frames(DEMO_DIR / "frames")
    assert 10 <= len(frames.names) <= 20
    result = segmenter.segment(frames.images[0], frames.query)
    assert result.labels.shape == frames.labels[0].shape


def test_inference_size_and_threshold_are_chosen_by_validation_miou(tmp_path, target_things_split):
    torch.manual_seed(0)
    save_checkpoint(create_model("tiny-test"), tmp_path / "model")
    chosen = choose_inference(tmp_path / "model", target_things_split, (1.0, 2.0), (0.3, 0.5))
    assert chosen["short_side"] in (64, 128) and chosen["threshold"] in (0.3, 0.5)
    assert 0 <= chosen["val_miou"] <= 1 and 0 <= chosen["val_foreground_iou"] <= 1
