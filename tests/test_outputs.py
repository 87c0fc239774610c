"""Folders written whole (`atomic_write_dir`) and what a crash leaves behind put right (`recover_dir`)."""
import pytest

from synseg_core.outputs import ASIDE_MARK, TEMPORARY_MARK, atomic_write_dir, recover_dir


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
