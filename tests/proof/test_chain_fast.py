"""The --fast proof chain end to end (tiny everything): every row of the table with finite numbers, the stage-2 init
above the all-background floor on the held-out split, a row's evaluate.py command reproducing its score, and a
resumed chain skipping what is finished."""
import json
import math
import shlex

import pytest

from training import evaluate
from synseg_proof.cli import run_chain

ROWS = {"floor", "maskclip", "init", "film_s0", "film_s1", "unconditioned_s0", "no_sep_s0", "align_cont_s0",
        "area_s0", "area_s1", "absent_s0", "absent_s1", "random_s0", "ceiling"}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    out = tmp_path_factory.mktemp("chain") / "fast"
    assert run_chain.main(["--fast", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_every_row_has_finite_scores_and_the_init_beats_the_floor(chain):
    results = json.loads((chain / "report" / "results.json").read_text())
    assert not results["partial"]
    rows = {r["row_id"]: r for r in results["rows"]}
    assert set(rows) == ROWS
    for row in rows.values():
        test = row["test"]
        for key in ("miou", "never_masked_miou", "foreground_iou"):
            assert test[key] is not None and math.isfinite(test[key]) and 0 <= test[key] <= 1, (row["row_id"], key)
        assert test["per_class_iou"].keys() == rows["floor"]["test"]["per_class_iou"].keys()
    assert rows["init"]["test"]["miou"] > rows["floor"]["test"]["miou"]
    assert rows["floor"]["test"]["foreground_iou"] == 0
    assert set(results["never_masked"]) and not set(results["never_masked"]) & set(results["masked"])
    sweep = results["lr_sweep"]
    assert sweep["chosen_lr"] in (1e-4, 1e-3) and math.isfinite(sweep["init_val_miou"])
    table = (chain / "report" / "results.md").read_text()
    assert "| all-background floor |" in table and "step 0" in table and "Targets:" in table
    assert (chain / "report" / "grid.png").stat().st_size > 0


@pytest.mark.slow
def test_a_rows_evaluate_command_reproduces_its_score(chain, tmp_path):
    row = json.loads((chain / "eval" / "film_s0" / "row.json").read_text())
    argv = shlex.split(row["test"]["command"])[2:]
    out = argv[argv.index("--out") + 1]
    argv[argv.index("--out") + 1] = str(tmp_path)
    assert evaluate.main([*argv, "--no-progress"]) == 0
    result = next(tmp_path.glob("*_custom_synseg_*.json"))  # named by checkpoint, dataset, method, protocol
    again = json.loads(result.read_text())
    assert again["miou"] == pytest.approx(row["test"]["miou"], abs=1e-9)
    assert json.loads((chain / "eval" / "film_s0" / result.name).read_text())["miou"] == again["miou"]
    assert out == str(chain / "eval" / "film_s0")


@pytest.mark.slow
def test_a_finished_chain_needs_resume_and_then_skips_everything(chain, capsys):
    before = (chain / "report" / "results.json").read_text()
    assert run_chain.main(["--fast", "--out", str(chain), "--no-progress"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    stamp = (chain / "stage2" / "clipseg_decoder.safetensors").stat().st_mtime_ns
    assert run_chain.main(["--fast", "--out", str(chain), "--resume", "--no-progress"]) == 0
    assert (chain / "report" / "results.json").read_text() == before
    assert (chain / "stage2" / "clipseg_decoder.safetensors").stat().st_mtime_ns == stamp
