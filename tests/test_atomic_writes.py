"""Files and folders written whole (`atomic_file`, `atomic_write_dir`) and what a crash leaves behind put right
(`recover_dir`)."""
import os

import pytest

from synseg_core.outputs import (ASIDE_MARK, TEMPORARY_MARK, OutputError, atomic_file, atomic_write, atomic_write_bytes,
                                 atomic_write_dir, recover_dir)


def test_a_file_appears_whole_with_the_usual_permissions(tmp_path):
    target = tmp_path / "sub" / "plan.bin"
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"first")
        assert not target.exists()  # nothing at the final name while the block writes
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_bytes() == b"first" and target.stat().st_mode & 0o777 == 0o666 & ~umask
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["plan.bin"]  # no temporary left


def test_a_failed_block_keeps_the_old_file_and_its_error(tmp_path):
    target = tmp_path / "labels.jsonl"
    target.write_text("old\n")
    with pytest.raises(ValueError, match="bad record"):
        with atomic_file(target) as tmp, tmp.open("w") as out:
            out.write("half")
            raise ValueError("bad record")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["labels.jsonl"]

    def no_space(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"labels.jsonl: No space left on device"):
        atomic_write(target, no_space)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["labels.jsonl"]


def test_a_file_under_a_file_is_an_output_error_naming_it(tmp_path):
    (tmp_path / "not_a_folder").write_text("x")
    with pytest.raises(OutputError, match="cannot write .*not_a_folder/model.onnx"):
        with atomic_file(tmp_path / "not_a_folder" / "model.onnx"):
            pytest.fail("the block must not run")


def write_files(**files):
    def write(folder):
        for name, text in files.items():
            (folder / name).write_text(text)
    return write


def test_a_folder_is_created_then_replaced_whole(tmp_path):
    target = tmp_path / "sub" / "model"
    atomic_write_dir(target, write_files(a="1", b="2"))
    assert sorted(p.name for p in target.iterdir()) == ["a", "b"] and oct(target.stat().st_mode & 0o777) == "0o755"
    atomic_write_dir(target, write_files(c="3"))
    assert sorted(p.name for p in target.iterdir()) == ["c"]  # replaced, never merged
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no temporary or aside folder left


def test_a_failed_write_keeps_the_old_folder_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "model"
    atomic_write_dir(target, write_files(a="1"))

    def failing(folder):
        (folder / "half").write_text("x")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write_dir(target, failing)
    assert (target / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_recovery_puts_the_old_folder_back_and_drops_half_written_ones(tmp_path):
    target = tmp_path / "best"
    aside = tmp_path / f".best{ASIDE_MARK}"
    aside.mkdir()
    (aside / "weights").write_text("old")
    half = tmp_path / f".best{TEMPORARY_MARK}abc"
    half.mkdir()
    other = tmp_path / f".bestish{TEMPORARY_MARK}abc"  # another folder's temporary is not touched
    other.mkdir()
    recover_dir(target)  # crashed between moving the old folder aside and renaming the new one
    assert (target / "weights").read_text() == "old"
    assert not aside.exists() and not half.exists() and other.exists()
    atomic_write_dir(target, write_files(weights="new"))
    (tmp_path / f".best{ASIDE_MARK}").mkdir()  # crashed after the new folder arrived: the aside one is stale
    recover_dir(target)
    assert (target / "weights").read_text() == "new" and not (tmp_path / f".best{ASIDE_MARK}").exists()
