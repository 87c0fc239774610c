"""Model configs: bundled variants load, unknown keys and wrong types fail with the valid choices."""
import pytest

from synseg_core import ConfigError, SynSegConfig, get_model_config, list_models
from synseg_core.config import replace_inference


def test_bundled_configs_load():
    assert {"tiny-test", "vitb16-rd64-refined"} <= set(list_models())
    paper = get_model_config("vitb16-rd64-refined")
    assert paper.backbone.extract_layers == (3, 6, 9) and paper.decoder.reduce_dim == 64
    assert paper.preprocess.mean == (0.485, 0.456, 0.406)  # CLIPSeg expects ImageNet statistics
    assert SynSegConfig.from_dict(paper.to_dict()) == paper


@pytest.mark.parametrize("data, match", [
    ({"decoder": {"reduce_dimm": 3}}, r"unknown key.*reduce_dimm.*valid keys.*reduce_dim"),
    ({"decoder": {"reduce_dim": "64"}}, "expected an integer"),
    ({"decoder": {"upsampler": "fancy"}}, r"not one of \['simple', 'refined'\]"),
    ({"synergy": {"source": "clip"}}, "not one of"),
    ({"loss": {"clip_min": True}}, "expected a number"),
    ({"backbone": {"extract_layers": 3}}, "expected a list"),
])
def test_invalid_configs(data, match):
    with pytest.raises(ConfigError, match=match):
        SynSegConfig.from_dict(data)


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="bundled configs"):
        get_model_config("vit-huge")


def test_replace_inference_validates():
    cfg = get_model_config("tiny-test").inference
    assert replace_inference(cfg, window=None).window is None
    with pytest.raises(ConfigError, match="unknown key"):
        replace_inference(cfg, windw=3)
