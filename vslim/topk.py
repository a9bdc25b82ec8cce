"""The one answer to "what is in this clip": the top-k classes with their scores and labels.

``vslim predict`` returns it, every client returns it whatever the protocol, and the server's classifying
endpoints build their answers from it, so an answer printed, sent or compared has one shape. Its ``to_dict``
is the JSON entry ``vslim predict --json`` and ``vslim-client --json`` print.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .accuracy import softmax, topk
from .data.sampling import Sampling
from .model_meta import ModelMeta


def sampling_of(value: Sampling | dict | None) -> Sampling | None:
    """The :class:`Sampling` of a server's or a JSON entry's record (a dict); a Sampling or None as given."""
    if isinstance(value, dict):
        record: dict[str, Any] = {f.name: value.get(f.name) for f in fields(Sampling)}
        return Sampling(**record)
    return value


@dataclass
class TopK:
    classes: list[int]
    scores: list[float]
    labels: list[str]
    sampling: Sampling | None = None  # set when the video was too short and frames were repeated
    source: str = ""  # the video or frame folder classified, when known

    def __post_init__(self):
        self.sampling = sampling_of(self.sampling)  # a dict from TopK(**record) still becomes a Sampling

    @classmethod
    def of(cls, output: np.ndarray, meta: ModelMeta | None, k: int, **extra) -> TopK:
        """The top ``k`` of one clip's output row: softmax of logits (as PaddleVideo scores), or the
        probabilities a model already gives; labels from ``meta``."""
        probs = softmax(output) if (meta is None or meta.output_kind == "logits") else output
        ids, scores = topk(probs, k)
        name = meta.label_name if meta else str
        return cls([int(i) for i in ids], [float(s) for s in scores], [name(int(i)) for i in ids], **extra)

    def to_dict(self) -> dict:
        """The shared classification entry: source, classes, scores, labels (+ sampling when present)."""
        entry: dict[str, Any] = {
            "source": self.source,
            "classes": self.classes,
            "scores": self.scores,
            "labels": self.labels,
        }
        if self.sampling is not None:
            entry["sampling"] = self.sampling.to_dict()
        return entry

    def entry(self, source) -> dict:
        """:meth:`to_dict` with ``source`` named."""
        self.source = str(source)
        return self.to_dict()
