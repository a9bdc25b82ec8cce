import pytest

from vslim.errors import OutputExistsError
from vslim.fsio import atomic_output_dir


def test_failure_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(target) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with atomic_output_dir(target):
            pass
    with atomic_output_dir(target, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_appearing_during_write_is_not_clobbered(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(OutputExistsError, match="appeared while it was being written"):
        with atomic_output_dir(target) as tmp:
            (tmp / "mine").write_text("1")
            target.mkdir()
            (target / "theirs").write_text("2")
    assert [p.name for p in target.iterdir()] == ["theirs"]
