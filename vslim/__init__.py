"""vslim: from a trained PaddlePaddle video classifier to INT8, serving and Lite deployments.

``libpaddle.so`` exports its own zlib symbols; if it is loaded before Python's
shared ``zlib`` module, later zlib users (paddleslim, gzip, scipy) crash with
``inflateReset2`` errors. Importing zlib here, before anything in vslim can
import paddle, pins the right library (docs/architecture.md, Python stack).
"""

import os
import zlib  # noqa: F401  (import order matters, see module docstring)

# Paddle's C++ logging (glog) prints every IR pass at INFO; keep warnings and errors.
os.environ.setdefault("GLOG_minloglevel", "2")

__version__ = "0.1.0"
