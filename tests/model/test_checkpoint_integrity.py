"""Checkpoint integrity: a SHA-256 per weight file verified on load, non-finite weights refused by name, and malformed
config.json files mapped to CheckpointError naming the file and the field (never a TypeError, a KeyError or a
weight download)."""
import json
import logging
import shutil
import struct

import pytest
import torch
from safetensors.torch import load_file

from synseg_core import CheckpointError, Segmenter, load_checkpoint, save_checkpoint
from synseg_core.inference.segmenter import BUNDLED_CHECKPOINTS
from synseg_core.model.checkpoint import CONFIG_NAME, WEIGHTS_NAME, file_sha256, read_checkpoint_config

DECODER_TENSOR = "decoder.film_mul.weight"


def _tensor_span(path, name: str) -> tuple[int, int]:
    """Byte offsets [start, end) of tensor `name`'s data in a safetensors file (8-byte header size, JSON header)."""
    data = path.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    start, end = json.loads(data[8:8 + header_size])[name]["data_offsets"]
    return 8 + header_size + start, 8 + header_size + end


def _overwrite(path, offset: int, payload: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(payload)


@pytest.fixture
def checkpoint(tiny_model, tmp_path):
    return save_checkpoint(tiny_model, tmp_path / "ck")


def test_the_weight_file_hash_is_recorded(checkpoint):
    _, meta = read_checkpoint_config(checkpoint)
    entry = meta["files"][WEIGHTS_NAME]
    assert entry == {"sha256": file_sha256(checkpoint / WEIGHTS_NAME),
                     "bytes": (checkpoint / WEIGHTS_NAME).stat().st_size}
    assert len(entry["sha256"]) == 64


def test_flipped_bytes_inside_a_decoder_tensor_are_refused(checkpoint):
    """The file still parses (same header, same size); only the hash can tell."""
    start, _ = _tensor_span(checkpoint / WEIGHTS_NAME, DECODER_TENSOR)
    _overwrite(checkpoint / WEIGHTS_NAME, start, bytes([0x3f, 0x80, 0x00, 0x01]))  # a finite float32
    assert DECODER_TENSOR in load_file(str(checkpoint / WEIGHTS_NAME))  # still a valid safetensors file
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_NAME}.*SHA-256.*{CONFIG_NAME}.*verify=False"):
        load_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match="SHA-256"):
        Segmenter.from_checkpoint(checkpoint)
    load_checkpoint(checkpoint, verify=False)  # the documented escape loads what is there


def test_non_finite_weights_are_refused_with_the_tensor_name(checkpoint):
    start, end = _tensor_span(checkpoint / WEIGHTS_NAME, DECODER_TENSOR)
    _overwrite(checkpoint / WEIGHTS_NAME, start, b"\xff" * (end - start))  # all-ones float32 = NaN
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match=rf"non-finite.*{DECODER_TENSOR}"):
        load_checkpoint(checkpoint, verify=False)


def test_a_non_finite_model_is_refused_even_with_a_matching_hash(tiny_model, tmp_path):
    with torch.no_grad():
        tiny_model.decoder.film_add.bias[0] = float("inf")
    save_checkpoint(tiny_model, tmp_path / "ck")
    with pytest.raises(CheckpointError, match=r"1 non-finite tensor.*decoder\.film_add\.bias"):
        load_checkpoint(tmp_path / "ck")


def test_a_changed_file_size_is_named(checkpoint):
    with open(checkpoint / WEIGHTS_NAME, "ab") as f:
        f.write(b"\0" * 16)
    with pytest.raises(CheckpointError, match=r"SHA-256|bytes"):
        load_checkpoint(checkpoint)


def test_checkpoints_without_hashes_load_with_a_note(checkpoint, caplog):
    """Checkpoints written before hashes were recorded still load; the log says they were not verified."""
    meta = json.loads((checkpoint / CONFIG_NAME).read_text())
    del meta["files"]
    (checkpoint / CONFIG_NAME).write_text(json.dumps(meta))
    with caplog.at_level(logging.INFO, logger="synseg_core.model.checkpoint"):
        load_checkpoint(checkpoint)
    assert "no SHA-256" in caplog.text and str(checkpoint) in caplog.text


def test_the_bundled_demo_checkpoint_is_verified(tmp_path):
    demo = BUNDLED_CHECKPOINTS["demo"]
    _, meta = read_checkpoint_config(demo)
    assert meta["files"][WEIGHTS_NAME]["sha256"] == file_sha256(demo / WEIGHTS_NAME)
    copy = shutil.copytree(demo, tmp_path / "demo")
    start, _ = _tensor_span(copy / WEIGHTS_NAME, DECODER_TENSOR)
    _overwrite(copy / WEIGHTS_NAME, start, b"\x00\x3c")  # float16 1.0
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(copy)


def _edit_config(folder, edit) -> None:
    meta = json.loads((folder / CONFIG_NAME).read_text())
    edit(meta)
    (folder / CONFIG_NAME).write_text(json.dumps(meta))


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(config=None), "'config'"),
    (lambda m: m.update(config=[]), "'config'"),
    (lambda m: m.pop("backbone_in_checkpoint"), "'backbone_in_checkpoint'"),
    (lambda m: m.update(backbone_in_checkpoint="yes"), "'backbone_in_checkpoint'"),
    (lambda m: m.update(config={}), r"'config\.backbone'"),
    (lambda m: m["config"].pop("decoder"), r"'config\.decoder'"),
    (lambda m: m["config"]["backbone"].pop("pretrained"), r"'config\.backbone\.pretrained'"),
    (lambda m: m["config"].update(backbone=None), r"'config\.backbone'"),
    (lambda m: m.update(files={WEIGHTS_NAME: {"sha256": 3}}), r"'files\.model\.safetensors\.sha256'"),
    (lambda m: m.update(files=[]), "'files'"),
    (lambda m: m.update(extra=5), "'extra'"),
], ids=["config-null", "config-list", "no-backbone_in_checkpoint", "backbone_in_checkpoint-str", "config-empty",
        "no-decoder", "no-pretrained", "backbone-null", "bad-hash", "files-list", "extra-int"])
def test_malformed_configs_name_the_file_and_the_field(checkpoint, edit, field, monkeypatch):
    import open_clip

    def no_download(*args, **kwargs):
        raise AssertionError("a malformed checkpoint config started a weight download")

    monkeypatch.setattr(open_clip, "create_model", no_download)
    _edit_config(checkpoint, edit)
    for load in (load_checkpoint, read_checkpoint_config, Segmenter.from_checkpoint):
        with pytest.raises(CheckpointError, match=rf"{checkpoint / CONFIG_NAME}.*{field}"):
            load(checkpoint)


def test_a_backbone_stored_in_the_checkpoint_is_never_downloaded(checkpoint):
    """A config that names a pretrained tag although the CLIP weights travel in the file: the file's weights win."""
    _edit_config(checkpoint, lambda m: m["config"]["backbone"].update(pretrained="openai", weights="/x.safetensors"))
    cfg, _ = read_checkpoint_config(checkpoint)
    assert cfg.backbone.pretrained is None and cfg.backbone.weights is None
    model = load_checkpoint(checkpoint)
    stored = load_file(str(checkpoint / WEIGHTS_NAME))
    key = next(k for k in stored if k.startswith("backbone."))
    assert torch.equal(model.state_dict()[key], stored[key])
