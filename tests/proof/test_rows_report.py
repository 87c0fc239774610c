"""The stage-3 runs and rows of the proof table, the target assessment and the written report."""
import json

import numpy as np
import pytest
from PIL import Image

from synseg_proof.config import ChainConfig, Stage3Section, full_chain
from synseg_core.config import ConfigError
from synseg_proof.report import GRID_PNG, RESULTS_JSON, RESULTS_MD, assess_targets, write_results
from synseg_proof.rows import KEY_VARIANTS, VARIANTS, stage3_rows, stage3_run
from synseg_proof.heldout import SAMPLES_FILE


def test_runs_are_named_by_their_settings_so_rows_reuse_sweep_runs():
    sweep_run = stage3_run("area", 1e-4, 0, 10.0, 0.05)
    assert sweep_run.name == "area10t0.05_lr0.0001_s0"
    assert {"model.overrides.loss.area_weight=10", "model.overrides.loss.area_target=0.05",
            "optim.lr=0.0001"} <= set(sweep_run.overrides)
    rows = stage3_rows(Stage3Section(seeds=(0, 1), random_decoder_lr=1e-3, area_target=0.05), 1e-5, area=(1e-4, 10.0),
                       absent=(1e-5, 1.0))
    assert sweep_run in [r.run for r in rows]
    assert next(r for r in rows if r.row_id == "film_s1").run.overrides == ("optim.lr=1e-05",)
    assert "model.overrides.loss.absent_weight=1" in next(r for r in rows if r.row_id == "absent_s0").run.overrides
    assert stage3_run("no_sep", 3e-5, 1).overrides == ("model.overrides.loss.sep_weight=0", "optim.lr=3e-05")
    random_row = next(r for r in rows if r.variant == "random")
    assert not random_row.run.from_init and "optim.lr=0.001" in random_row.run.overrides
    assert sorted(r.row_id for r in rows if r.variant in KEY_VARIANTS) == sorted(
        f"{v}_s{s}" for v in KEY_VARIANTS for s in (0, 1))
    assert {r.variant for r in rows} == set(VARIANTS)


def test_bad_runs_and_settings_are_refused():
    with pytest.raises(ValueError, match="unknown stage-3 variant 'films'"):
        stage3_run("films", 1e-4, 0)
    with pytest.raises(ValueError, match="'area' needs an extension weight"):
        stage3_run("area", 1e-4, 0)
    with pytest.raises(ValueError, match="'area' needs its area_target"):
        stage3_run("area", 1e-4, 0, 1.0)
    with pytest.raises(ValueError, match="'film' takes no extension weight"):
        stage3_run("film", 1e-4, 0, 1.0)
    with pytest.raises(ConfigError, match="need at least one value each"):
        ChainConfig(stage3=Stage3Section(extension_lrs=()))
    with pytest.raises(ConfigError, match="eval.thresholds"):
        ChainConfig(eval=type(full_chain().eval)(thresholds=(0.0, 0.5)))


def _row(row_id, miou, never):
    return {"row_id": row_id, "label": row_id, "seed": 0, "val_miou": miou,
            "test": {"miou": miou, "never_masked_miou": never, "foreground_iou": 0.5, "threshold": 0.4}}


def test_targets_need_the_gain_on_every_seed_without_losing_never_masked_categories():
    rows = {r["row_id"]: r for r in [_row("init", 0.20, 0.10), _row("film_s0", 0.24, 0.11), _row("film_s1", 0.22, 0.12),
                                     _row("area_s0", 0.25, 0.10), _row("area_s1", 0.24, 0.10),
                                     _row("absent_s0", 0.30, 0.05), _row("absent_s1", 0.30, 0.05),
                                     _row("no_sep_s0", 0.21, 0.10)]}
    targets = assess_targets(rows, KEY_VARIANTS, (0, 1))
    assert targets["recipes"]["film"]["met"] is False  # +2 on seed 1
    assert targets["recipes"]["area"]["met"] is True
    assert targets["recipes"]["absent"]["met"] is False  # loses on never-masked categories
    assert targets["beats_init"] is True
    assert targets["sep_ablation"]["dropping_sep_loses"] is True
    del rows["area_s1"]
    partial = assess_targets(rows, KEY_VARIANTS, (0, 1))
    assert partial["recipes"]["area"]["met"] is None and partial["beats_init"] is None


def test_results_are_written_as_json_markdown_and_a_grid(tmp_path):
    folder = tmp_path / "eval" / "init"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez_compressed(folder / SAMPLES_FILE, names=np.array(["a", "b"]),
                        images=rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8),
                        ground_truth=rng.integers(0, 4, (2, 32, 32)), prediction=rng.integers(0, 4, (2, 32, 32)))
    extension = {**_row("absent_s0", 0.3, 0.1), "lr": "1e-05",
                 "train_command": "python training/train.py --config c.yaml model.overrides.loss.absent_weight=10"}
    results = {"partial": True, "val_images": 3, "test_images": 4, "never_masked": ["red star"],
               "rows": [_row("init", 0.2, 0.1), extension], "targets": {}, "lr_sweep": None, "extension_sweeps": None}
    paths = write_results(results, tmp_path / "report", [("init", folder), ("missing", tmp_path / "nope")], 2)
    assert json.loads(paths["json"].read_text())["partial"] is True
    table = paths["markdown"].read_text()
    assert "PARTIAL" in table and "| init | 0 |" in table and "| 20.0 | 10.0 | 50.0 |" in table
    assert "| absent_s0 | 0 | 1e-05 / 10 |" in table
    grid = np.asarray(Image.open(paths["grid"]))
    assert grid.shape[1] > 3 * 128 and grid.shape[0] > 2 * 128  # image, truth, one prediction; two rows
    assert {p.name for p in (tmp_path / "report").iterdir()} == {RESULTS_JSON, RESULTS_MD, GRID_PNG}
