"""Writing outputs so that a crash or a concurrent writer never leaves half a result.

Every packager, exporter and compressor writes its output folder through
:func:`atomic_output_dir`: the content is built in a hidden sibling folder and
renamed into place only when complete. A rename within one file system is atomic,
so readers see either no folder or a whole one. A writer killed outright leaves
its hidden folder behind; the next writer of the same output removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputExistsError
from .textnum import whole_number


def _tmp_sibling(final: Path, tag: str) -> Path:
    return final.parent / f".{final.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_siblings(final: Path) -> list[Path]:
    """Delete temporary siblings of ``final`` left by writers that died (SIGKILL, power loss)."""
    removed = []
    for candidate in final.parent.glob(f".{final.name}.*-*-*"):
        parts = candidate.name.rsplit("-", 2)
        pid = whole_number(parts[1]) if len(parts) == 3 else None
        if pid is not None and not _pid_alive(pid):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def check_output_free(path: Path | str, overwrite: bool) -> Path:
    """Fail early, before any expensive work, when ``path`` exists and may not be replaced."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"output {path} already exists; choose another path or pass --overwrite to replace it")
    return path


@contextlib.contextmanager
def atomic_output_dir(final: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``final`` when the block succeeds.

    On any exception (KeyboardInterrupt included) the temporary folder is removed
    and ``final`` is untouched. With ``overwrite`` an existing ``final`` is swapped
    out only after the new content is complete.
    """
    final = Path(final).absolute()
    check_output_free(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    tmp = _tmp_sibling(final, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _commit(tmp, final, overwrite)


def _appeared(final: Path) -> OutputExistsError:
    return OutputExistsError(
        f"output {final} appeared while it was being written (another vslim process?); "
        "nothing was replaced; rerun with another path, or with --overwrite once the other "
        "writer has finished"
    )


def _commit(tmp: Path, final: Path, overwrite: bool) -> None:
    old = None
    if final.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _appeared(final)
        old = _tmp_sibling(final, "old")
        try:
            os.rename(final, old)
        except FileNotFoundError:  # another writer moved it away first
            old = None
    try:
        os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:  # put the previous output back unless another writer's output took its place
            if final.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(old, final)
        if old is None and final.exists():  # the other writer renamed in between our check and ours
            raise _appeared(final) from exc
        raise OutputExistsError(
            f"could not move the finished output into {final}: {exc}; another process may have "
            "written it at the same time, rerun to try again"
        ) from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write a whole file or nothing (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_json(path: Path | str, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def sha256_of(path: Path | str) -> str:
    """Checksum of a file, read in 1 MiB blocks (model weights can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
