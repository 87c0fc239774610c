"""Mask-supervised training (stage 2 / ceiling) on a real tiny open_clip model: the mask loss falls, the exported
CLIPSeg state dict imports back to the same decoder, an interrupted run resumes to the same weights, a finished run
is skipped, and bad settings are refused."""
import json

import pytest
import torch
from safetensors.torch import load_file

from synseg_core.model.checkpoint import load_checkpoint
from synseg_core.model.clipseg_import import import_clipseg_decoder
from synseg_core.config import ConfigError, get_model_config
from synseg_core.model.synseg import SynSeg
from synseg_proof.supervised import CLIPSEG_FILE, FINAL_DIR, SupervisedConfig, train_supervised


def _cfg(steps: int, **extra) -> SupervisedConfig:
    return SupervisedConfig.from_dict({"batch_size": 4, "absent_per_image": 2, "text_chunk": 8, "seed": 3,
                                       "optim": {"lr": 1e-2, "projector_lr": 1e-2},
                                       "schedule": {"max_steps": steps, "warmup_steps": 2, "min_lr": 1e-5},
                                       "checkpoint_every": 5, "log_every": 1, **extra})


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_mask_training_lowers_the_loss_and_exports_a_clipseg_decoder(source_split, tmp_path):
    final = train_supervised(get_model_config("tiny-test"), source_split, tmp_path, _cfg(20), progress=False)
    assert final == tmp_path / FINAL_DIR
    losses = _losses(tmp_path)
    assert len(losses) == 20 and sum(losses[-4:]) < 0.8 * sum(losses[:4])

    state = load_file(str(tmp_path / CLIPSEG_FILE))
    assert state and all(k.startswith("decoder.") for k in state)  # the Hugging Face CLIPSeg naming
    trained = load_checkpoint(final).eval()
    fresh = SynSeg(get_model_config("tiny-test")).eval()
    fresh.backbone.load_state_dict(trained.backbone.state_dict())
    import_clipseg_decoder(fresh, tmp_path / CLIPSEG_FILE)
    images, text = torch.randn(2, 3, 64, 64), torch.randn(3, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(images, text), trained(images, text), rtol=0, atol=0)


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_uninterrupted_weights_and_a_finished_run_is_skipped(source_split, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    train_supervised(get_model_config("tiny-test"), source_split, whole, _cfg(8), progress=False)
    assert train_supervised(get_model_config("tiny-test"), source_split, split, _cfg(8), progress=False,
                            stop_at=4) is None
    assert not (split / FINAL_DIR).exists()
    train_supervised(get_model_config("tiny-test"), source_split, split, _cfg(8), progress=False)
    a = load_file(str(whole / FINAL_DIR / "model.safetensors"))
    b = load_file(str(split / FINAL_DIR / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(whole) == _losses(split)

    stamp = (split / CLIPSEG_FILE).stat().st_mtime_ns
    train_supervised(get_model_config("tiny-test"), source_split, split, _cfg(8), progress=False)
    assert (split / CLIPSEG_FILE).stat().st_mtime_ns == stamp


def test_bad_settings_name_the_key_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['batchsize'\]; valid keys: \['batch_size'"):
        SupervisedConfig.from_dict({"batchsize": 3})
    with pytest.raises(ConfigError, match="supervised.batch_size must be >= 1, got 0"):
        SupervisedConfig.from_dict({"batch_size": 0})
    with pytest.raises(ConfigError, match="warmup_steps <= max_steps"):
        SupervisedConfig.from_dict({"schedule": {"max_steps": 5, "warmup_steps": 9}})


def test_cli_trains_with_overrides_and_refuses_unknown_keys(source_split, tmp_path, capsys):
    from synseg_core.config import MODEL_CONFIG_DIR
    from synseg_proof.cli import train_supervised as cli

    base = ["--model-config", str(MODEL_CONFIG_DIR / "tiny-test.json"), "--split", str(source_split), "--no-progress"]
    assert cli.main([*base, "--out", str(tmp_path / "bad"), "optim.lrr=1"]) == 2
    assert "unknown key(s) ['lrr']" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "run"), "batch_size=2", "schedule.max_steps=2",
                     "schedule.warmup_steps=1", "text_chunk=8"]) == 0
    assert (tmp_path / "run" / CLIPSEG_FILE).is_file() and (tmp_path / "run" / FINAL_DIR / "config.json").is_file()
