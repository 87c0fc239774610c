"""synseg-model, the installed command: list, download (real huggingface_hub against the local hub via HF_ENDPOINT,
in a fresh process as a user runs it), import-clipseg for hand-copied files, info; bad input exits 2 with a message
and no traceback."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from synseg_core.model.checkpoint import read_checkpoint_config
from synseg_core.model.cli import main
from synseg_core.model.hub import MODEL_DIR_ENV, download_pretrained

NAME = "clipseg-rd64-refined"
SCRIPT = Path(sys.executable).parent / "synseg-model"
# The command in a fresh process where transformers cannot be imported (as on a robot without the test
# dependencies; open_clip imports it only when it is installed).
NO_TRANSFORMERS = ("import sys; sys.modules['transformers'] = None; from synseg_core.model.cli import main; "
                   "sys.exit(main(sys.argv[1:]))")


def _env(tmp_path, **extra):
    return {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), MODEL_DIR_ENV: str(tmp_path / "models"), **extra}


def _run(args, env, timeout=300):
    return subprocess.run([sys.executable, "-c", NO_TRANSFORMERS, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_command_is_installed_and_lists_the_registry(tmp_path):
    run = subprocess.run([str(SCRIPT), "list"], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert NAME in run.stdout and "CIDAS/clipseg-rd64-refined" in run.stdout and "Apache-2.0" in run.stdout
    assert f"not converted here: synseg-model download {NAME}" in run.stdout


def test_download_through_hf_endpoint_in_a_fresh_process(hub, tmp_path):
    out = tmp_path / "usb"
    run = _run(["download", NAME, "--out", str(out)], _env(tmp_path, HF_ENDPOINT=hub.url))
    assert run.returncode == 0, run.stderr
    assert f"model '{NAME}' is ready in {out / NAME}" in run.stdout
    assert read_checkpoint_config(out / NAME)[1]["extra"]["source"]["repo_id"] == "CIDAS/clipseg-rd64-refined"
    assert (tmp_path / "hf_home" / "hub").is_dir()  # huggingface_hub's own cache, under HF_HOME


def test_first_use_through_segmenter_converts_into_the_model_folder(hub, tmp_path):
    code = ("import sys; sys.modules['transformers'] = None; from synseg_core import Segmenter; "
            "s = Segmenter.from_checkpoint('clipseg-rd64-refined'); print('window', s.inference.window)")
    run = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path, HF_ENDPOINT=hub.url),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "window 448" in run.stdout
    assert f"pretrained model '{NAME}' is not in {tmp_path / 'models'} yet: downloading" in run.stderr
    assert (tmp_path / "models" / NAME / "config.json").is_file()


def test_offline_without_cache_exits_2_with_the_instructions(tmp_path):
    run = _run(["download", NAME], _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert f"synseg-model download {NAME} --out DIR" in run.stderr and f"{tmp_path / 'models' / NAME}" in run.stderr


def test_an_unknown_name_exits_2(capsys):
    assert main(["download", "clipseg-nope"]) == 2
    assert f"unknown pretrained model 'clipseg-nope'; registered: ['{NAME}']" in capsys.readouterr().err


def test_a_missing_command_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_import_clipseg_converts_hand_copied_files(hub, clipseg, tmp_path, capsys):
    reference = download_pretrained(NAME, tmp_path / "downloaded", endpoint=hub.url, hf_cache=tmp_path / "hf")
    folder = clipseg[1]
    assert main(["import-clipseg", "--weights", str(folder / "model.safetensors"), "--config",
                 str(folder / "config.json"), "--out", str(tmp_path / "imported")]) == 0
    imported = tmp_path / "imported" / NAME
    assert f"ready in {imported}" in capsys.readouterr().out
    meta = read_checkpoint_config(imported)[1]
    assert meta["extra"]["source"]["imported_from"] == str((folder / "model.safetensors").resolve())
    assert "Apache-2.0" in meta["extra"]["licence"]
    ours, theirs = load_file(str(imported / "model.safetensors")), load_file(str(reference / "model.safetensors"))
    assert ours.keys() == theirs.keys() and all((ours[k] == theirs[k]).all() for k in ours)


def test_import_clipseg_bad_files_exit_2(clipseg, tmp_path, capsys):
    folder = clipseg[1]
    assert main(["import-clipseg", "--weights", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path)]) == 2
    assert "file not found" in capsys.readouterr().err
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes((folder / "model.safetensors").read_bytes()[:5000])
    assert main(["import-clipseg", "--weights", str(broken), "--config", str(folder / "config.json"),
                 "--out", str(tmp_path / "out")]) == 2
    assert "cannot read CLIPSeg weights" in capsys.readouterr().err
    assert not (tmp_path / "out" / NAME).exists()


def test_info_describes_and_verifies(hub, tmp_path, capsys, monkeypatch):
    folder = download_pretrained(NAME, tmp_path / "models", endpoint=hub.url, hf_cache=tmp_path / "hf")
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "models"))
    for source in (str(folder), NAME, str(folder / "model.safetensors")):
        assert main(["info", source]) == 0
        out = capsys.readouterr().out
        assert f"checkpoint: {folder}" in out and f"name: {NAME}" in out and "SHA-256 verified" in out
        assert "upsampler refined" in out and '"window": 448' in out and "CIDAS/clipseg-rd64-refined" in out
    with open(folder / "model.safetensors", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\0" * 8)
    assert main(["info", str(folder)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert main(["info", str(folder), "--no-verify"]) == 0
    assert "SHA-256 skipped" in capsys.readouterr().out
    shutil.rmtree(folder)
    assert main(["info", str(folder)]) == 2
    assert "checkpoint folder not found" in capsys.readouterr().err
    assert main(["info", NAME]) == 2
    assert f"not converted in {tmp_path / 'models'}: run `synseg-model download {NAME}`" in capsys.readouterr().err
