"""Generate the Python modules of ``serving/proto/*.proto`` (run at build/install time by setup.py).

The ``.proto`` files are the single source of truth (the C++ client compiles the
same files). protoc writes absolute imports between generated modules, so the
files are staged under their package path (``vslim/serving/_generated``) before
compiling: the generated code then imports ``vslim.serving._generated.X``.

The Open Inference Protocol file (``grpc_service.proto``, package ``inference``)
is registered in a descriptor pool of its own instead of protobuf's default
one: Triton's client library registers the same symbols (``inference.ModelInferRequest``
...) under another file name, and the default pool refuses a second definition,
so a process could not import both. Messages, their wire format, pickling and
JSON are unaffected; only lookups by name in the default pool do not see them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent / "proto"
OUT_DIR = Path(__file__).resolve().parent / "_generated"
PACKAGE_PATH = Path("vslim") / "serving" / "_generated"
PRIVATE_POOL = ("grpc_service_pb2.py",)
_DEFAULT_POOL_LINE = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL_LINES = (
    "_POOL = _descriptor_pool.DescriptorPool()  # see vslim.serving.protogen\nDESCRIPTOR = _POOL.AddSerializedFile("
)


def _use_private_pool(module: Path) -> None:
    text = module.read_text()
    if _DEFAULT_POOL_LINE not in text:
        raise RuntimeError(f"{module.name}: protoc output changed; cannot move it to a private descriptor pool")
    module.write_text(text.replace(_DEFAULT_POOL_LINE, _PRIVATE_POOL_LINES, 1))


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
        args = [
            "protoc",
            f"-I{src}",
            f"-I{include}",
            f"--python_out={dst}",
            f"--grpc_python_out={dst}",
            *[str(PACKAGE_PATH / p.name) for p in protos],
        ]
        code = protoc.main(args)
        if code != 0:
            raise RuntimeError(f"protoc failed ({code}) compiling {[p.name for p in protos]}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for py in sorted((dst / PACKAGE_PATH).glob("*.py")):
            shutil.copy(py, out_dir / py.name)
            if py.name in PRIVATE_POOL:
                _use_private_pool(out_dir / py.name)
            written.append(out_dir / py.name)
    (out_dir / "__init__.py").write_text('"""Generated from serving/proto at build time; do not edit."""\n')
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR):
        print(path)
