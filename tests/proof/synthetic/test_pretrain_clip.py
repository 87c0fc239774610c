"""Stage-1 CLI on a tiny real open_clip model: training lowers the loss, export loads in the SynSeg backbone,
resuming reproduces an uninterrupted run, and bad settings are refused with clear errors."""
import json
import math

import cv2
import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from synseg_core.model.backbone import build_clip as build_backbone_clip
from synseg_core.config import BackboneConfig, ConfigError
from synseg_proof.synthetic import SceneGenerator, write_split
from synseg_proof.synthetic.clip_model import (CLIP_CONFIG_FILE, CLIP_WEIGHTS_FILE, FAST_OVERRIDES, ClipPretrainConfig,
                                              config_with_overrides, load_exported_clip)
from synseg_proof.synthetic.captions import swap_shape
from synseg_core.training.engine import TrainingEngine
from synseg_core.training.precision import MixedPrecision
from synseg_core.training.state import load_trainer_state
from synseg_proof.synthetic.clip_train import CHECKPOINT_FILE, LOG_FILE, METRICS_FILE, CaptionBatches, shape_swap_loss
from synseg_proof.synthetic.vocabulary import SHAPE_PLURALS
from synseg_proof.cli import pretrain_clip

IMAGES = 48


@pytest.fixture(scope="module")
def caption_split(tmp_path_factory):
    generator = SceneGenerator(["source", "target"], FAST_OVERRIDES["image_size"], seed=3)
    return write_split(tmp_path_factory.mktemp("data") / "caps", generator, IMAGES, "captions", progress=False)


def _run(split, out, *settings, stop_at=None):
    argv = ["--train", str(split), "--out", str(out), "--fast", "--no-progress"]
    argv += [a for s in settings for a in ("--set", s)]
    argv += ["--stop-at", str(stop_at)] if stop_at is not None else []
    return pretrain_clip.main(argv)


@pytest.mark.slow
def test_pretraining_lowers_the_loss_and_exports_a_clip_the_backbone_loads(caption_split, tmp_path):
    assert _run(caption_split, tmp_path, "steps=60", "lr=0.002") == 0
    history = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    losses = [h["loss"] for h in history]
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses)
    # Loss of a model that cannot tell pairs apart: ClipLoss at ln(B) plus the shape-swap term at ln(2).
    chance = math.log(FAST_OVERRIDES["batch_size"]) + ClipPretrainConfig().shape_swap_weight * math.log(2)
    assert np.mean(losses[-10:]) < 0.8 * chance < np.mean(losses[:3])

    metrics = json.loads((tmp_path / METRICS_FILE).read_text())
    for per_template in metrics["zero_shot"].values():
        for acc in per_template.values():
            assert set(acc) == {"colour", "shape", "thing", "stuff"} and all(0 <= v <= 1 for v in acc.values())
    assert 0 <= metrics["retrieval"]["image_to_text_r1"] <= metrics["retrieval"]["image_to_text_r5"] <= 1

    state = load_file(str(tmp_path / CLIP_WEIGHTS_FILE))
    assert all(v.dtype == torch.float16 for v in state.values())  # default storage precision
    clip_config = json.loads((tmp_path / CLIP_CONFIG_FILE).read_text())
    backbone, tokenizer = build_backbone_clip(BackboneConfig(
        model_name=None, pretrained=None, clip_config=clip_config, weights=str(tmp_path / CLIP_WEIGHTS_FILE)))
    ours, our_tokenizer = load_exported_clip(tmp_path)
    prompts = ["red circle", "two blue squares on grass"]
    with torch.no_grad():
        assert torch.equal(backbone.eval().encode_text(tokenizer(prompts)), ours.encode_text(our_tokenizer(prompts)))


@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_one(caption_split, tmp_path):
    settings = ("steps=8", "checkpoint_every=3", "log_every=2")
    _run(caption_split, tmp_path / "whole", *settings)
    _run(caption_split, tmp_path / "parts", *settings, stop_at=5)
    assert not (tmp_path / "parts" / CLIP_WEIGHTS_FILE).exists()
    _run(caption_split, tmp_path / "parts", *settings)
    assert (tmp_path / "parts" / CHECKPOINT_FILE).is_file()
    whole, parts = (load_trainer_state(tmp_path / p) for p in ("whole", "parts"))
    assert whole["step"] == parts["step"] == 8 and whole["model"].keys() == parts["model"].keys()
    for key in whole["model"]:
        torch.testing.assert_close(parts["model"][key], whole["model"][key], rtol=1e-5, atol=1e-6, msg=key)
    for index, moments in whole["optimizer"]["state"].items():
        torch.testing.assert_close(parts["optimizer"]["state"][index]["exp_avg"], moments["exp_avg"], rtol=1e-5,
                                   atol=1e-6)
    assert parts["scheduler"]["last_epoch"] == whole["scheduler"]["last_epoch"] == 8
    read = lambda p: [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
                      for line in (tmp_path / p / LOG_FILE).read_text().splitlines()]
    assert read("parts") == read("whole")


@pytest.mark.slow
def test_resuming_with_other_training_settings_is_refused(caption_split, tmp_path):
    _run(caption_split, tmp_path, "steps=4", stop_at=2)
    with pytest.raises(ConfigError, match=r"\['lr'\]"):
        _run(caption_split, tmp_path, "steps=4", "lr=0.5")


def test_unknown_or_mistyped_settings_are_errors(caption_split, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['stepz'\].*steps"):
        _run(caption_split, tmp_path, "stepz=3")
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        _run(caption_split, tmp_path, "steps=many")
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        config_with_overrides(ClipPretrainConfig(), {"image_size": 100})


def test_an_image_of_another_size_inside_a_split_is_named(tmp_path):
    generator = SceneGenerator(["source"], FAST_OVERRIDES["image_size"], seed=5)
    split = write_split(tmp_path / "caps", generator, 4, "captions", progress=False)
    odd = sorted((split / "images").iterdir())[2]
    cv2.imwrite(str(odd), np.zeros((20, 24, 3), np.uint8))
    cfg = config_with_overrides(ClipPretrainConfig(), FAST_OVERRIDES)
    with pytest.raises(ValueError, match=rf"{odd.name} is 24x20; every image of a stage-1 split must be 32x32"):
        CaptionBatches([split], cfg, open_clip.tokenizer.SimpleTokenizer(context_length=cfg.context_length))


def test_bad_devices_are_errors_that_name_the_choices(caption_split, tmp_path):
    with pytest.raises(ConfigError, match="'tpu' is not a torch device.*'auto', 'cpu', 'cuda'"):
        _run(caption_split, tmp_path, "device=tpu")
    with pytest.raises(ConfigError, match="'meta' is not supported"):
        _run(caption_split, tmp_path, "device=meta")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            _run(caption_split, tmp_path, "device=cuda")
        with pytest.raises(ConfigError, match=r"precision=fp16 needs a CUDA device"):
            _run(caption_split, tmp_path, "device=cpu", "precision=fp16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_run_resumes_on_the_cpu_and_matches_an_all_cpu_run_closely(caption_split, tmp_path):
    settings = ("steps=6", "checkpoint_every=3", "log_every=1")
    _run(caption_split, tmp_path / "cpu", *settings, "device=cpu")
    _run(caption_split, tmp_path / "mixed", *settings, "device=cuda", stop_at=3)
    _run(caption_split, tmp_path / "mixed", *settings, "device=cpu")
    read = lambda p: [json.loads(line)["loss"] for line in (tmp_path / p / LOG_FILE).read_text().splitlines()]
    np.testing.assert_allclose(read("mixed"), read("cpu"), rtol=2e-3)  # TF32/kernel differences only
    metrics = json.loads((tmp_path / "mixed" / METRICS_FILE).read_text())
    assert 0 <= metrics["retrieval"]["image_to_text_r1"] <= 1


def test_images_of_another_size_are_refused(caption_split, tmp_path):
    with pytest.raises(ValueError, match="image_size is 64"):
        _run(caption_split, tmp_path, "image_size=64")


def test_the_engines_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = ClipPretrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5)
    weight = torch.nn.Parameter(torch.zeros(2, 2))
    engine = TrainingEngine({"w": weight}, cfg.optim_config(), cfg.schedule_config(),
                            MixedPrecision("fp32", torch.device("cpu")), part="clip")
    assert [g["name"] for g in engine.optimizer.param_groups] == ["clip"]
    assert engine.optimizer.param_groups[0]["weight_decay"] == cfg.weight_decay
    rates = []
    for _ in range(cfg.steps + 1):
        rates.append(engine.lr())
        engine.apply((weight ** 2).sum())
        engine.scheduler.step()
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert rates[-1] == pytest.approx(1e-5)


def test_shape_swap_loss_is_ln2_for_identical_captions_and_falls_with_separation():
    torch.manual_seed(0)
    image = F.normalize(torch.randn(4, 8), dim=-1)
    text = F.normalize(image + 0.1 * torch.randn(4, 8), dim=-1)
    scale = torch.tensor(10.0)
    assert shape_swap_loss(image, text, text, scale).item() == pytest.approx(math.log(2))
    assert shape_swap_loss(image, text, -text, scale).item() < 1e-3
    assert shape_swap_loss(image, -text, text, scale).item() > 10


def test_swapped_captions_differ_in_one_shape_word_only():
    rng = np.random.default_rng(0)
    for caption in ["two red crosses and an orange circle on grass", "a photo of a blue star on sky and water"]:
        for _ in range(10):
            swapped = swap_shape(caption, rng)
            changed = [(a, b) for a, b in zip(caption.split(), swapped.split()) if a != b]
            assert len(caption.split()) == len(swapped.split()) and len(changed) == 1
            (old, new), = changed
            assert (old in SHAPE_PLURALS) == (new in SHAPE_PLURALS)  # singular stays singular
    with pytest.raises(ValueError, match="names no shape"):
        swap_shape("grass and sky", rng)


def test_batches_cover_each_epoch_once_in_a_seeded_order(caption_split):
    import open_clip

    cfg = config_with_overrides(ClipPretrainConfig(), {**FAST_OVERRIDES, "batch_size": IMAGES // 4})
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=cfg.context_length)
    data = CaptionBatches([caption_split], cfg, tokenizer)
    epoch = np.concatenate([data.indices(s) for s in range(4)])
    assert sorted(epoch.tolist()) == list(range(IMAGES))
    again = CaptionBatches([caption_split], cfg, tokenizer)
    assert np.array_equal(again.indices(5), data.indices(5)) and not np.array_equal(data.indices(4), epoch[:12])
    batch = data.batch(0)
    assert batch.images.shape == (IMAGES // 4, 3, cfg.image_size, cfg.image_size)
    assert batch.tokens.shape == batch.negative_tokens.shape == (IMAGES // 4, cfg.context_length)
    assert not torch.equal(batch.tokens, batch.negative_tokens)
