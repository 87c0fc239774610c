"""Training config: YAML + dotlist overrides, strict keys and types, range checks, the shipped configs."""
import pytest

from synseg_core.config import ConfigError
from synseg_core.training.config import TrainConfig, load_train_config, resolve_model_config
from synseg_core.training.overrides import apply_overrides, parse_override
from trainer_fixtures import REPO, TINY_CONFIG

DATA = ["data.path=/some/manifest.jsonl"]


def test_shipped_configs_load_and_match_the_spec():
    paper = load_train_config(REPO / "training" / "configs" / "cc12m_vitb16.yaml")
    assert paper.model.config == "vitb16-rd64-refined"
    assert paper.data.augment.image_size == 224 and paper.data.categories.max_categories == 4
    assert (paper.optim.lr, paper.optim.projector_lr, paper.optim.weight_decay) == (1e-4, 1e-3, 0.05)
    assert (paper.schedule.warmup_steps, paper.schedule.min_lr) == (1000, 1e-6)
    tiny = load_train_config(TINY_CONFIG)
    assert tiny.model.config == "tiny-test"
    assert resolve_model_config(tiny.model).preprocess.train_size == tiny.data.augment.image_size


def test_overrides_are_read_as_yaml_including_exponent_floats(tmp_path):
    cfg = load_train_config(TINY_CONFIG, ["optim.lr=3e-4", "optim.grad_clip_norm=null", "optim.betas=[0.8, 0.9]",
                                          "model.overrides.loss.area_weight=0.25", "output_dir=runs/x"])
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.grad_clip_norm is None
    assert cfg.optim.betas == (0.8, 0.9)
    assert resolve_model_config(cfg.model).loss.area_weight == 0.25
    assert cfg.output_dir == "runs/x"
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("data: {path: m.jsonl}\noptim: {lr: 5e-5}\n")
    assert load_train_config(yaml_file, ["model.config=tiny-test", "data.augment.image_size=64"]).optim.lr == 5e-5


def test_unknown_key_lists_the_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lrr'\].*'projector_lr'"):
        load_train_config(TINY_CONFIG, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['optimiser'\].*'optim'"):
        load_train_config(TINY_CONFIG, ["optimiser.lr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: m.jsonl}\nschedule: {max_step: 10}\n")
    with pytest.raises(ConfigError, match=r"\['max_step'\].*'max_steps'"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match=r"model.overrides: .*\['are_weight'\].*'area_weight'"):
        load_train_config(TINY_CONFIG, ["model.overrides.loss.are_weight=1"])


@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", r"optim.lr: expected a number, got 'fast'"),
    ("schedule.max_steps=1.5", r"schedule.max_steps: expected an integer, got 1.5"),
    ("runtime.precision=fp8", r"'fp8' is not one of \['auto', 'fp32', 'bf16', 'fp16'\]"),
    ("logging.progress_bar=maybe", r"progress_bar: expected bool, got 'maybe'"),
    ("optim.lr.value=1", r"optim.lr is a value \(0.001\), not a section"),
    ("optim.eps.value=1", r"optim.eps: expected a number, got \{'value': 1\}"),
    ("schedule.warmup_steps=100", r"warmup_steps must be in \[0, max_steps=40\], got 100"),
    ("optim.lr=-1", r"optim.lr must be > 0, got -1"),
    ("checkpoint.keep_last=0", r"checkpoint.keep_last must be >= 1, got 0"),
    ("data.augment.image_size=224", r"image_size \(224\) differs from the model's preprocess.train_size \(64\)"),
])
def test_wrong_types_and_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(TINY_CONFIG, [override])


def test_missing_dataset_and_malformed_input_are_clear(tmp_path):
    no_data = tmp_path / "no_data.yaml"
    no_data.write_text("model: {config: tiny-test}\n")
    with pytest.raises(ConfigError, match="data.path is required"):
        load_train_config(no_data)
    with pytest.raises(ConfigError, match="cannot read training config"):
        load_train_config(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_train_config(listing)
    with pytest.raises(ConfigError, match="not of the form section.key=value"):
        parse_override("optim.lr")
    with pytest.raises(ConfigError, match="unknown model config 'tiny-tset'"):
        load_train_config(TINY_CONFIG, ["model.config=tiny-tset"])


def test_apply_overrides_does_not_touch_its_input_and_rejects_descending_into_values():
    data = {"optim": {"lr": 1.0}}
    assert apply_overrides(data, ["optim.eps=0.5"]) == {"optim": {"lr": 1.0, "eps": 0.5}}
    assert data == {"optim": {"lr": 1.0}}
    with pytest.raises(ConfigError, match=r"optim.lr is a value \(1.0\), not a section"):
        apply_overrides(data, ["optim.lr.x=2"])


def test_config_round_trips_through_its_dict():
    cfg = load_train_config(TINY_CONFIG, DATA)
    again = load_train_config(None, [f"{k}={v}" for k, v in _flatten(cfg.to_dict()).items()])
    assert isinstance(again, TrainConfig) and again == cfg


def _flatten(d, prefix=""):
    import json

    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(list(v) if isinstance(v, tuple) else v)
    return out
