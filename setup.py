"""Build hooks live here; all metadata is in setup.cfg.

The serving protocol's Python modules are generated from ``serving/proto`` on
every build (regular and editable installs alike), never committed. Generation
runs when setup.py loads, because setuptools checks that every listed package
folder exists (``vslim.serving._generated`` included) before any build command.
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _generate_protos() -> None:
    spec = importlib.util.spec_from_file_location("_protogen", ROOT / "serving" / "protogen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate()


class BuildPyWithProtos(build_py):
    def run(self):
        _generate_protos()  # again: the .proto files may have changed since setup.py loaded
        super().run()


_generate_protos()
setup(cmdclass={"build_py": BuildPyWithProtos})
