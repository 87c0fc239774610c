"""training/train.py and training/plot_metrics.py: arguments, exit codes and the messages for bad input."""
import pytest

from synseg_core.training.state import list_checkpoints
from trainer_fixtures import TINY_CONFIG, load_script, read_records, tiny_overrides, write_caption_dataset

train = load_script("train")
plot_cli = load_script("plot_metrics")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_caption_dataset(tmp_path_factory.mktemp("captions"), count=16, seed=5)


def test_parse_args_collects_overrides_and_flags():
    args = train.parse_args(["--config", "c.yaml", "optim.lr=1e-3", "seed=3", "--resume", "--stop-at", "7"])
    assert (args.config, args.overrides, args.resume, args.stop_at) == ("c.yaml", ["optim.lr=1e-3", "seed=3"],
                                                                         True, 7)
    with pytest.raises(SystemExit):
        train.parse_args(["optim.lr=1"])  # --config is required


@pytest.mark.parametrize("overrides, message", [
    (["optim.lrr=1"], r"unknown key(s) ['lrr']; valid keys: ['lr', 'projector_lr'"),
    (["loader.batch_size=many"], "config.loader.batch_size: expected an integer, got 'many'"),
    (["data.path=/nonexistent/manifest.jsonl"], "caption manifest not found: /nonexistent/manifest.jsonl"),
    (["data.format=webdataset", "data.path=/nonexistent/shards/{000..002}.tar"], "3 of 3 shards not found"),
    (["runtime.precision=fp16", "data.path=x.jsonl"], "fp16 needs a CUDA device"),
])
def test_bad_config_or_data_exits_2_with_a_clear_message(overrides, message, tmp_path, capsys):
    code = train.main(["--config", str(TINY_CONFIG), f"output_dir={tmp_path / 'run'}", *overrides])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not list_checkpoints(tmp_path / "run")


def test_empty_manifest_is_an_error_before_training(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("\n")
    assert train.main(["--config", str(TINY_CONFIG), f"data.path={tmp_path / 'empty.jsonl'}",
                       f"output_dir={tmp_path / 'run'}"]) == 2
    assert "contains no samples (an empty dataset)" in capsys.readouterr().err


def test_output_dir_guard_and_resume_without_a_checkpoint(manifest, tmp_path, capsys):
    args = ["--config", str(TINY_CONFIG), *tiny_overrides(manifest, tmp_path / "run", 2)]
    assert train.main([*args, "--resume"]) == 2
    assert "--resume: no checkpoint in" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"type": "train", "step": 99, "total": 1.0}\n')  # abandoned
    assert train.main(args) == 0
    assert [r["step"] for r in read_records(tmp_path / "run", "train")] == [2]
    assert train.main(args) == 2  # a second fresh run would mix with the first one's checkpoints
    assert "already holds checkpoints (latest: step 2); pass --resume" in capsys.readouterr().err
    assert train.main([*args, "--resume"]) == 0  # nothing left to do: max_steps reached
    assert [s for s, _ in list_checkpoints(tmp_path / "run")] == [2]


@pytest.mark.slow
def test_plot_metrics_cli_draws_a_finished_run(manifest, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--config", str(TINY_CONFIG), *tiny_overrides(manifest, out, 3, **{"logging.every": 1})]) == 0
    assert "done: 3 steps" in capsys.readouterr().out
    assert plot_cli.main([str(out), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert plot_cli.main([str(out / "metrics.jsonl")]) == 0
    assert (out / "loss_curves.png").is_file()


def test_plot_metrics_cli_errors(tmp_path, capsys):
    assert plot_cli.main([str(tmp_path / "none.jsonl")]) == 2
    assert "metrics file not found" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text("")
    assert plot_cli.main([str(tmp_path)]) == 2
    assert "no 'train' records" in capsys.readouterr().err
