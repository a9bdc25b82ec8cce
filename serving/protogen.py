"""Generate the Python modules of ``serving/proto/*.proto`` (run at build/install time by setup.py).

The ``.proto`` files are the single source of truth (the C++ client compiles the
same files). protoc writes absolute imports between generated modules, so the
files are staged under their package path (``vslim/serving/_generated``) before
compiling: the generated code then imports ``vslim.serving._generated.X``.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent / "proto"
OUT_DIR = Path(__file__).resolve().parent / "_generated"
PACKAGE_PATH = Path("vslim") / "serving" / "_generated"


def generate(out_dir: Path = OUT_DIR) -> list[Path]:
    """Compile every proto into ``out_dir`` (a package); returns the written files."""
    from grpc_tools import protoc  # build-time dependency (grpcio-tools)

    protos = sorted(PROTO_DIR.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        staged = src / PACKAGE_PATH
        staged.mkdir(parents=True)
        for proto in protos:
            shutil.copy(proto, staged / proto.name)
        dst = Path(tmp) / "out"
        dst.mkdir()
        include = Path(protoc.__file__).parent / "_proto"
        args = ["protoc", f"-I{src}", f"-I{include}", f"--python_out={dst}", f"--grpc_python_out={dst}",
                *[str(PACKAGE_PATH / p.name) for p in protos]]
        code = protoc.main(args)
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) compiling {[p.name for p in protos]}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for py in sorted((dst / PACKAGE_PATH).glob("*.py")):
            shutil.copy(py, out_dir / py.name)
            written.append(out_dir / py.name)
    (out_dir / "__init__.py").write_text('"""Generated from serving/proto at build time; do not edit."""\n')
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR):
        print(path)
