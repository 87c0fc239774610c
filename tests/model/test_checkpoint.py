"""Checkpoints: exact round trip, backbone stored only when not reproducible, clear errors, no pickles."""
import json

import numpy as np
import pytest
import torch

from synseg_core import CheckpointError, Segmenter, get_model_config, load_checkpoint, save_checkpoint
from synseg_core.model.checkpoint import WEIGHTS_NAME, read_checkpoint_config
from synseg_core.model.synseg import SynSeg


def test_round_trip_is_exact(tiny_model, tmp_path):
    with torch.no_grad():
        for p in tiny_model.trainable_parameters().values():
            p.add_(torch.randn_like(p))
    save_checkpoint(tiny_model, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck")
    a, b = tiny_model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    r1 = Segmenter.from_checkpoint(tmp_path / "ck").segment(img, ["a", "b"])
    r2 = Segmenter.from_checkpoint(tmp_path / "ck" / WEIGHTS_NAME).segment(img, ["a", "b"])
    np.testing.assert_array_equal(r1.probabilities, r2.probabilities)


def test_backbone_saved_only_when_not_reproducible(tmp_path, monkeypatch):
    cfg = get_model_config("tiny-test")
    save_checkpoint(SynSeg(cfg), tmp_path / "random")
    _, meta = read_checkpoint_config(tmp_path / "random")
    assert meta["backbone_in_checkpoint"] is True
    # A named pretrained tag is reproducible: only the trainable parts are stored.
    model = SynSeg(cfg)
    model.cfg.backbone.model_name, model.cfg.backbone.pretrained = "ViT-B-16", "openai"
    save_checkpoint(model, tmp_path / "named")
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "named" / WEIGHTS_NAME)).keys()
    assert keys and not any(k.startswith("backbone.") for k in keys)


def test_mismatched_config_names_the_tensors(tiny_model, tmp_path):
    save_checkpoint(tiny_model, tmp_path / "ck")
    other = get_model_config("tiny-test")
    other.decoder.reduce_dim = 8
    with pytest.raises(CheckpointError, match=r"shape mismatches.*decoder\."):
        load_checkpoint(tmp_path / "ck", SynSeg(other))


def test_truncated_weights_are_reported(tiny_model, tmp_path):
    save_checkpoint(tiny_model, tmp_path / "ck")
    w = tmp_path / "ck" / WEIGHTS_NAME
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "ck")


def test_bad_config_files(tiny_model, tmp_path):
    save_checkpoint(tiny_model, tmp_path / "ck")
    cfg_file = tmp_path / "ck" / "config.json"
    meta = json.loads(cfg_file.read_text())
    meta["config"]["decoder"]["reduce_dimm"] = 3
    cfg_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown key.*reduce_dimm.*valid keys"):
        load_checkpoint(tmp_path / "ck")
    cfg_file.write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")


def test_unknown_model_source():
    from synseg_core import ConfigError

    with pytest.raises(ConfigError, match="bundled model config"):
        Segmenter.from_checkpoint("no-such-model")


def test_checkpoint_files_follow_the_umask(tiny_model, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        save_checkpoint(tiny_model, tmp_path / "ck")
    finally:
        os.umask(old)
    for name in ("config.json", WEIGHTS_NAME):
        assert (tmp_path / "ck" / name).stat().st_mode & 0o777 == 0o644
