"""Loading ``.pdparams`` weights, ours or PaddleVideo's, with errors that name the key.

``Layer.set_state_dict`` only warns on missing or misshapen keys and leaves
random weights behind; for a deployment tool that is a silent accuracy loss, so
every mismatch here is an error naming the first offending key and both shapes.

``.pdparams`` files are pickles: only load weights from a source you trust.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle

from ..errors import ModelError

HEAD_PREFIX = "head."


def read_state_dict(path: Path | str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        state = paddle.load(str(path), return_numpy=True)
    except Exception as exc:  # paddle raises assorted pickle/IO errors
        raise ModelError(f"weights file {path} cannot be read as a .pdparams state dict: {exc}") from exc
    if not isinstance(state, dict) or not state:
        raise ModelError(f"weights file {path} does not hold a state dict (a mapping of parameter names)")
    return state


def num_classes_of(state: dict, path: Path | str = "weights", classifier: str = HEAD_PREFIX) -> int:
    """The class count of a checkpoint, read from its classifier's weight (``[in, classes]`` in Paddle)."""
    key = classifier + "weight"
    w = state.get(key)
    if w is None:
        raise ModelError(f"{path} has no {key!r}; is it a PaddleVideo recognizer checkpoint of this architecture?")
    return int(np.shape(w)[1])


def load_weights(
    model: paddle.nn.Layer, state: dict, source: str = "weights", skip_head: bool = False, classifier: str = HEAD_PREFIX
) -> None:
    """Copy ``state`` into ``model``; every key must exist on both sides with the same shape.

    ``skip_head`` keeps the model's own classifier (the keys under ``classifier``: fine-tuning to new classes).
    """
    own = model.state_dict()
    wanted = {k: v for k, v in own.items() if not (skip_head and k.startswith(classifier))}
    given = {k: v for k, v in state.items() if not (skip_head and k.startswith(classifier))}
    missing = [k for k in wanted if k not in given]
    if missing:
        raise ModelError(
            f"{source} does not match the architecture: it lacks {missing[0]!r} "
            f"(shape {list(wanted[missing[0]].shape)}) and {len(missing) - 1} more key(s); "
            "check --arch (and --num-seg) against how the weights were trained"
        )
    unexpected = [k for k in given if k not in wanted]
    if unexpected:
        raise ModelError(
            f"{source} does not match the architecture: unexpected key {unexpected[0]!r} "
            f"(shape {list(np.shape(given[unexpected[0]]))}) and {len(unexpected) - 1} more; "
            "check --arch against how the weights were trained"
        )
    for key, param in wanted.items():
        if list(np.shape(given[key])) != list(param.shape):
            raise ModelError(
                f"{source} does not match the architecture: {key!r} has shape "
                f"{list(np.shape(given[key]))} in the weights but {list(param.shape)} in the model"
            )
    model.set_state_dict({k: given[k] for k in wanted})
