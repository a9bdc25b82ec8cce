"""The distribution installs every subpackage under the import name docs/architecture.md gives it."""

import configparser
from pathlib import Path

from conftest import REPO


def _cfg():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def test_every_package_folder_is_listed_in_setup_cfg():
    cfg = _cfg()
    listed = set(cfg["options"]["packages"].split())
    mapping = dict(line.split(" = ") for line in cfg["options"]["package_dir"].strip().splitlines())
    found = set()
    for init in REPO.glob("**/__init__.py"):
        rel = init.parent.relative_to(REPO)
        if rel.parts[0] in ("tests", ".venv", "build") or rel.parts[0].startswith("."):
            continue
        top = {v: k for k, v in mapping.items()}.get(rel.parts[0])
        assert top, f"{rel} is not under a mapped folder"
        found.add(".".join([top, *rel.parts[1:]]))
    assert found == listed, f"missing from setup.cfg: {found - listed}; stale: {listed - found}"


def test_mapped_subpackages_import_from_their_folders():
    import vslim.benchmarks
    import vslim.compress
    import vslim.lite
    import vslim.serving

    for mod, folder in (
        (vslim.compress, "compress"),
        (vslim.serving, "serving"),
        (vslim.lite, "lite"),
        (vslim.benchmarks, "benchmarks"),
    ):
        assert Path(mod.__file__).parent == REPO / folder


def test_constraints_pin_numpy_below_2():
    text = (REPO / "constraints.txt").read_text()
    assert "numpy==1." in text
    import numpy

    assert numpy.__version__.startswith("1.")


def test_importing_vslim_then_paddle_keeps_zlib_working():
    """The zlib trap (docs/architecture.md, Python stack): paddle first breaks later gzip users; vslim first
    must not."""
    import subprocess
    import sys

    code = (
        "import sys, vslim; assert 'zlib' in sys.modules and 'paddle' not in sys.modules; "
        "import paddle, gzip; assert gzip.decompress(gzip.compress(b'x' * 100000)) == b'x' * 100000; "
        "import paddleslim; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")
