"""Named pretrained models end to end, with no network: a random-weight Hugging Face CLIPSeg in the hub repository's
file layout, served by a local hub on 127.0.0.1 (tests/model/hub_server.py), fetched by the real huggingface_hub
client, converted without transformers into a self-contained synseg checkpoint, and compared with transformers'
CLIPSeg on the same weights and prompts."""
import dataclasses
import hashlib
import json

import numpy as np
import pytest
from huggingface_hub import constants as hub_constants

from clipseg_files import NATIVE_SIZE, REPO_ID, hf_probabilities
from synseg_core import CheckpointError, Segmenter
from synseg_core.config import replace_inference
from synseg_core.model.checkpoint import read_checkpoint_config, verify_checkpoint
from synseg_core.model.hub import MODEL_DIR_ENV, ModelUnavailableError, download_pretrained, resolve_pretrained
from synseg_core.model.registry import get_pretrained

NAME = "clipseg-rd64-refined"
PROMPTS = ["cat", "remote control", "couch"]


@pytest.fixture
def dirs(tmp_path):
    """(converted-model folder, huggingface_hub cache folder)."""
    return tmp_path / "models", tmp_path / "hf"


def _download(hub, dirs, entry=NAME):
    return download_pretrained(entry, dirs[0], endpoint=hub.url, hf_cache=dirs[1])


def _leftovers(models):
    """Anything in the model folder other than lock files: half-written conversions would show here."""
    return sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) if models.exists() else []


def test_download_writes_a_self_contained_checkpoint_with_provenance(hub, dirs, clipseg):
    folder = _download(hub, dirs)
    assert folder == dirs[0] / NAME and _leftovers(dirs[0]) == [NAME]
    cfg, meta = read_checkpoint_config(folder)
    assert meta["backbone_in_checkpoint"] is True
    assert cfg.backbone.model_name is None and cfg.backbone.pretrained is None and cfg.backbone.weights is None
    assert cfg.backbone.clip_config["quick_gelu"] is True and cfg.decoder.upsampler == "refined"
    inference = cfg.inference
    assert (inference.short_side, inference.window, inference.stride) == (448, 448, 224)
    assert inference.mask_threshold == inference.background_threshold == 0.5
    source = meta["extra"]["source"]
    served = hub.hub.repos[REPO_ID]
    assert (source["repo_id"], source["revision"], source["commit"]) == (REPO_ID, "main", served.commit)
    for name in ("config.json", "model.safetensors"):
        assert source["files"][name]["sha256"] == hashlib.sha256(served.files[name]).hexdigest()
    assert "Apache-2.0" in meta["extra"]["licence"] and "MIT" in meta["extra"]["licence"]
    assert verify_checkpoint(folder) is True


@pytest.mark.parametrize("size", [NATIVE_SIZE, 96], ids=["native-grid", "interpolated-positions"])
def test_converted_model_matches_transformers_clipseg_through_segmenter(hub, dirs, clipseg, size):
    hf_model, _ = clipseg
    segmenter = Segmenter.from_checkpoint(_download(hub, dirs))
    # One whole-image window at the image's own size: no resizing on either side, so the maps compare pixel by pixel.
    segmenter.inference = replace_inference(segmenter.inference, short_side=size, window=None, templates="single")
    image = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ours = segmenter.segment(image, PROMPTS).probabilities
    expected = hf_probabilities(hf_model, image, [f"a photo of a {c}." for c in PROMPTS],
                                segmenter.model.backbone.tokenizer)
    assert ours.shape == expected.shape == (len(PROMPTS), size, size)
    assert ((expected > 0.05) & (expected < 0.95)).mean() > 0.5, "saturated maps would prove little"
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4)


def test_a_second_use_is_served_from_the_caches(hub, dirs):
    _download(hub, dirs)
    gets = [r for r in hub.hub.requests if r[0] == "GET"]
    assert len(gets) == 2
    hub.hub.requests.clear()
    assert resolve_pretrained(NAME, dirs[0]) == dirs[0] / NAME
    assert hub.hub.requests == []  # a converted model is used as it is
    assert _download(hub, dirs) == dirs[0] / NAME and hub.hub.requests == []  # downloading again: nothing to do
    # Forced: converted again; the hub client only checks metadata, the bytes come from its cache.
    download_pretrained(NAME, dirs[0], force=True, endpoint=hub.url, hf_cache=dirs[1])
    assert [r[0] for r in hub.hub.requests] == ["HEAD", "HEAD"]


def test_an_interrupted_transfer_resumes(hub, dirs, no_retry_pause, monkeypatch):
    # The client writes in chunks of this size; a transfer cut inside the first chunk restarts from zero.
    monkeypatch.setattr(hub_constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    hub.hub.truncate.add("model.safetensors")
    folder = _download(hub, dirs)
    ranges = [r[2] for r in hub.hub.requests if r[0] == "GET" and r[1].endswith("model.safetensors")]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    assert verify_checkpoint(folder)


def test_a_transfer_that_keeps_failing_leaves_nothing_behind(hub, dirs, no_retry_pause):
    hub.hub.always_truncate.add("model.safetensors")
    with pytest.raises(CheckpointError, match=r"downloading model\.safetensors from CIDAS/clipseg-rd64-refined.*"
                                              r"failed"):
        _download(hub, dirs)
    assert _leftovers(dirs[0]) == []
    snapshots = list((dirs[1]).rglob("snapshots/*/model.safetensors"))
    assert snapshots == []  # the hub client keeps only its .incomplete file, for a later resume


def test_a_corrupt_file_in_the_repository_is_a_clear_error(hub, dirs):
    files = hub.hub.repos[REPO_ID].files
    files["model.safetensors"] = files["model.safetensors"][:1000]
    with pytest.raises(CheckpointError, match=r"cannot read CLIPSeg weights .*model\.safetensors"):
        _download(hub, dirs)
    assert _leftovers(dirs[0]) == []


def test_a_config_that_is_not_json_is_a_clear_error(hub, dirs):
    hub.hub.repos[REPO_ID].files["config.json"] = b"{not json"
    with pytest.raises(CheckpointError, match=r"cannot read .*config\.json"):
        _download(hub, dirs)
    assert _leftovers(dirs[0]) == []


def test_a_wrong_repository_is_named(hub, dirs):
    entry = dataclasses.replace(get_pretrained(NAME), repo_id="someone/not-clipseg")
    with pytest.raises(CheckpointError, match="repository someone/not-clipseg not found"):
        _download(hub, dirs, entry)


def test_a_wrong_revision_is_named(hub, dirs):
    entry = dataclasses.replace(get_pretrained(NAME), revision="v9")
    with pytest.raises(CheckpointError, match="revision 'v9' not found in CIDAS/clipseg-rd64-refined"):
        _download(hub, dirs, entry)


def test_a_missing_file_is_named(hub, dirs):
    del hub.hub.repos[REPO_ID].files["model.safetensors"]
    with pytest.raises(CheckpointError, match=r"has no file 'model\.safetensors'"):
        _download(hub, dirs)
    assert _leftovers(dirs[0]) == []


def test_no_network_and_no_cache_says_what_to_run_and_where_to_copy(dirs):
    with pytest.raises(ModelUnavailableError) as info:
        download_pretrained(NAME, dirs[0], endpoint="http://127.0.0.1:9", hf_cache=dirs[1])  # nothing listens
    message = str(info.value)
    assert f"synseg-model download {NAME} --out DIR" in message
    assert f"DIR/{NAME} to {dirs[0] / NAME}" in message
    assert _leftovers(dirs[0]) == []


def test_offline_mode_uses_the_hub_cache_and_fails_clearly_without_it(hub, dirs, monkeypatch):
    _download(hub, dirs)
    (dirs[0] / NAME / "config.json").unlink()  # an incomplete converted folder is converted again
    hub.hub.requests.clear()
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    assert verify_checkpoint(_download(hub, dirs))  # from the hub cache, offline
    assert hub.hub.requests == []
    with pytest.raises(ModelUnavailableError, match=f"synseg-model download {NAME}"):
        download_pretrained(NAME, dirs[0] / "elsewhere", endpoint=hub.url, hf_cache=dirs[1] / "empty")
    assert hub.hub.requests == []


def test_segmenter_and_the_model_folder_variable_accept_the_name(hub, dirs, monkeypatch):
    _download(hub, dirs)
    monkeypatch.setenv(MODEL_DIR_ENV, str(dirs[0]))
    segmenter = Segmenter.from_checkpoint(NAME)
    assert segmenter.model.cfg.name == NAME and segmenter.inference.short_side == 448
    monkeypatch.setenv(MODEL_DIR_ENV, str(dirs[0] / "empty"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError, match=rf"synseg-model download {NAME} --out DIR.*"
                                                    rf"{dirs[0] / 'empty' / NAME}"):
        Segmenter.from_checkpoint(NAME)


def test_conversion_is_deterministic(hub, dirs):
    first = json.loads((_download(hub, dirs) / "config.json").read_text())["files"]
    second = json.loads((download_pretrained(NAME, dirs[0] / "again", endpoint=hub.url, hf_cache=dirs[1])
                         / "config.json").read_text())["files"]
    assert first == second
