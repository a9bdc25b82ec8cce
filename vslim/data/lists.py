"""PaddleVideo list files.

Two formats exist and PaddleVideo users have both on disk:

* frames: ``<frame_dir> <num_frames> <label>`` (frames named by a template such as
  ``img_{:05}.jpg``, numbered from 1);
* videos: ``<path> <label>``.

Paths are relative to a ``data_prefix``. Parsing is strict: a malformed line is an
error that names the file and line number, because a silently skipped line skews
calibration and accuracy figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import ListConfig
from ..errors import DataError
from ..textnum import whole_number


@dataclass(frozen=True)
class VideoEntry:
    """One labelled clip source: a video file or a folder of numbered frames."""

    path: Path
    label: int
    num_frames: int | None = None  # set for frame folders
    suffix: str = "img_{:05}.jpg"
    where: str = ""  # "list.txt:12", for error messages

    @property
    def is_frames(self) -> bool:
        return self.num_frames is not None


def _parse_int(text: str, what: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{where}: {what} must be a whole number, got {text!r}") from None


def read_list(cfg: ListConfig, base_dir: Path | None = None) -> list[VideoEntry]:
    """Parse the list ``cfg.file_path`` into entries with resolved paths.

    ``base_dir`` resolves a relative ``file_path``/``data_prefix`` (e.g. the folder of
    the YAML that named them); absolute paths are kept.
    """
    cfg.validate()
    list_path = _resolve(cfg.file_path, base_dir)
    if not list_path.is_file():
        raise DataError(f"list file {list_path} does not exist; check file_path")
    prefix = _resolve(cfg.data_prefix, base_dir) if cfg.data_prefix else list_path.parent
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"list file {list_path} is not UTF-8 text: {exc}") from exc
    entries = []
    fmt = cfg.format
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{list_path}:{lineno}"
        parts = line.split()
        if fmt == "auto":
            fmt = {3: "frames", 2: "videos"}.get(len(parts), "auto")
            if fmt == "auto":
                raise DataError(
                    f"{where}: expected '<frame_dir> <num_frames> <label>' or '<video> <label>', got {line!r}"
                )
        entries.append(_parse_line(parts, fmt, prefix, cfg.suffix, where, line))
    if not entries:
        raise DataError(f"list file {list_path} has no entries; it needs one clip per line")
    return entries


def _parse_line(parts, fmt, prefix: Path, suffix: str, where: str, line: str) -> VideoEntry:
    if fmt == "frames":
        if len(parts) != 3:
            raise DataError(f"{where}: a frames list line is '<frame_dir> <num_frames> <label>', got {line!r}")
        num = _parse_int(parts[1], "num_frames", where)
        if num < 1:
            raise DataError(f"{where}: num_frames must be >= 1, got {num}")
        label = _parse_int(parts[2], "label", where)
        path = prefix / parts[0]
        return VideoEntry(path, _check_label(label, where), num, suffix, where)
    if len(parts) != 2:
        raise DataError(f"{where}: a video list line is '<video path> <label>', got {line!r}")
    label = _parse_int(parts[1], "label", where)
    return VideoEntry(prefix / parts[0], _check_label(label, where), None, suffix, where)


def _check_label(label: int, where: str) -> int:
    if label < 0:
        raise DataError(f"{where}: label must be >= 0, got {label}")
    return label


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute() or base_dir is None:
        return p
    # PaddleVideo resolves against the working directory; fall back to the config's folder.
    return p if p.exists() else Path(base_dir) / p


def read_labels(path: Path | str) -> list[str]:
    """Class names, one per line (PaddleVideo's label-map files have this form too)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist")
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not labels:
        raise DataError(f"labels file {path} is empty")
    # Accept "<id> <name>" lines as well as bare names.
    numbered: list[tuple[int, str]] = []
    for parts in (line.split(maxsplit=1) for line in labels):
        number = whole_number(parts[0]) if len(parts) == 2 else None
        if number is None:
            return labels
        numbered.append((number, parts[1]))
    return [name for _, name in sorted(numbered, key=lambda item: item[0])]
