"""The v2 models a bundle exposes, over the one engine every protocol shares.

* ``{name}``: the model's own tensors (``data_batch_0`` -> ``outputs``), version ``1``;
* ``{name}_video``: a whole video file per clip (``video``, BYTES, ``[N]``) or decoded
  frames (``frames``, UINT8, ``[T, H, W, 3]``) in; ``label`` (BYTES), ``class_id``
  (INT64) and ``prob`` (FP32), each ``[N, k]``, out, for the top-k classes
  (request parameter ``top_k``, default 5), and ``sampling`` (BYTES ``[N, 1]``: the JSON
  record of a clip that repeated frames of a too-short video, else empty) when asked
  for or when a clip was padded. Its clips go through the same engine
  queue as tensor requests, so they batch with requests of any protocol.

Names, statuses and messages follow Triton where the specification leaves
room (noted where it matters).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from vslim import __version__
from vslim.textnum import whole_number

from ...errors import NOT_FOUND, TOO_LARGE, RequestError
from ...service import TENSOR_MODEL, VIDEO_MODEL, ModelService

if TYPE_CHECKING:
    from ...repository import ModelRepository
from ...signature import TensorIn, VarSpec, check_inputs, check_outputs
from ...video import clip_from_frames, clips_from_videos
from .datatypes import BYTES, CONFIG_TYPES, DTYPES, WORDING, datatype_of, element_count
from .messages import InferInput, InferOutput, InferRequest, InferResponse
from .shm import EXTENSION as SHM_EXTENSION

SERVER_NAME = "vslim"
EXTENSIONS = ("binary_tensor_data", "model_configuration", "model_repository", "statistics", "parameters")
DEFAULT_TOP_K = 5


def server_metadata(shared_memory: bool = False) -> dict:
    """``shared_memory``: the server takes clients' shared memory regions (``--allow-client-shm``)."""
    extensions = [*EXTENSIONS, SHM_EXTENSION] if shared_memory else list(EXTENSIONS)
    return {"name": SERVER_NAME, "version": __version__, "extensions": extensions}


def _tensor(name: str, datatype: str, shape) -> dict:
    return {"name": name, "datatype": datatype, "shape": [int(d) for d in shape]}


def _config_tensor(name: str, datatype: str, dims, optional: bool = False) -> dict:
    entry = {"name": name, "data_type": CONFIG_TYPES[datatype], "dims": [int(d) for d in dims]}
    return {**entry, "optional": True} if optional else entry


def _refuse_classification(req: InferRequest, hint: str) -> None:
    for out in req.outputs:
        if "classification" in out.parameters:
            raise RequestError(f"output {out.name!r}: Triton's classification extension is not served; {hint}")


class V2Model:
    """What every v2 model answers: metadata, configuration, readiness, statistics, inference."""

    kind: str
    platform: str

    def __init__(self, name: str, service: ModelService, versions: list[str]):
        self.name = name
        self.service = service
        self.version = service.version
        self.versions = versions

    @property
    def ready(self) -> bool:
        return self.service.ready

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "versions": self.versions,
            "platform": self.platform,
            "inputs": self._inputs(),
            "outputs": self._outputs(),
        }

    def stats(self) -> dict:
        return self.service.stats[self.kind].snapshot(self.name, self.version)

    def _instance_group(self) -> list[dict]:
        b = self.service.batching
        return [{"name": self.name, "count": b.workers, "kind": "KIND_GPU" if b.device == "gpu" else "KIND_CPU"}]

    def _inputs(self) -> list[dict]:
        raise NotImplementedError

    def _outputs(self) -> list[dict]:
        raise NotImplementedError

    def config(self) -> dict:
        raise NotImplementedError

    async def infer(self, req: InferRequest, tag: str) -> InferResponse:
        raise NotImplementedError


class TensorModel(V2Model):
    """The served model's own inputs and outputs; a request's first dimension is its batch."""

    kind = TENSOR_MODEL
    platform = "paddle_inference"

    def _spec_tensor(self, spec: VarSpec) -> dict:
        return _tensor(spec.alias, datatype_of(spec.dtype), [-1, *spec.shape])

    def _inputs(self) -> list[dict]:
        return [self._spec_tensor(s) for s in self.service.signature.feeds]

    def _outputs(self) -> list[dict]:
        return [self._spec_tensor(s) for s in self.service.signature.fetches]

    def config(self) -> dict:
        s = self.service
        conf = {
            "name": self.name,
            "platform": self.platform,
            "backend": "vslim",
            # the largest batch one request may carry (dims below leave the batch dimension out)
            "max_batch_size": s.limits.max_batch,
            "input": [_config_tensor(v.alias, datatype_of(v.dtype), v.shape) for v in s.signature.feeds],
            "output": [_config_tensor(v.alias, datatype_of(v.dtype), v.shape) for v in s.signature.fetches],
            "instance_group": self._instance_group(),
        }
        if s.batching.max_batch_size > 1:
            conf["dynamic_batching"] = {
                "preferred_batch_size": [s.batching.max_batch_size],
                "max_queue_delay_microseconds": int(s.batching.timeout_ms * 1000),
            }
        return conf

    async def infer(self, req: InferRequest, tag: str) -> InferResponse:
        s = self.service
        _refuse_classification(req, f"ask the {self.name}_video model for top-k labels")
        tensors = [TensorIn(i.name, DTYPES.get(i.datatype), i.datatype, i.shape, i.data) for i in req.inputs]
        feeds = check_inputs(tensors, s.signature, s.limits, WORDING)
        asked = [o.name for o in req.outputs]
        fetch = check_outputs(asked, s.signature, WORDING)
        # answer under the names the client used (alias or variable name); by default the aliases
        names: dict[str, str] = {}
        for key in reversed(asked):
            spec = s.signature.fetch(key)
            assert spec is not None  # check_outputs above refused unknown names
            names[spec.name] = key
        if not asked:
            names = {v.name: v.alias for v in s.signature.fetches}
        outputs = await s.run(feeds, fetch, tag)
        return InferResponse(
            self.name,
            self.version,
            req.id,
            [
                InferOutput(names[var], datatype_of(outputs[var].dtype), list(outputs[var].shape), outputs[var])
                for var in fetch
            ],
        )


class VideoModel(V2Model):
    """Video files or frames in, top-k labels out; decoding and preprocessing run on the server."""

    kind = VIDEO_MODEL
    platform = "vslim_video"
    INPUTS = {"video": (BYTES, [-1]), "frames": ("UINT8", [-1, -1, -1, 3])}
    OUTPUTS = {"label": BYTES, "class_id": "INT64", "prob": "FP32", "sampling": BYTES}

    def _inputs(self) -> list[dict]:
        return [_tensor(name, dt, shape) for name, (dt, shape) in self.INPUTS.items()]

    def _outputs(self) -> list[dict]:
        return [_tensor(name, dt, [-1, -1]) for name, dt in self.OUTPUTS.items()]

    def config(self) -> dict:
        # max_batch_size 0: dims are whole shapes; clips are batched inside the server, not by the client
        return {
            "name": self.name,
            "platform": self.platform,
            "backend": "vslim",
            "max_batch_size": 0,
            "input": [_config_tensor(n, dt, shape, optional=True) for n, (dt, shape) in self.INPUTS.items()],
            "output": [_config_tensor(n, dt, [-1, -1]) for n, dt in self.OUTPUTS.items()],
            "instance_group": self._instance_group(),
        }

    def _top_k(self, parameters: dict[str, Any]) -> int:
        value = parameters.get("top_k", DEFAULT_TOP_K)
        if isinstance(value, str) and whole_number(value) is not None:
            value = whole_number(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"parameter top_k must be a whole number >= 1, got {value!r}")
        return min(value, self.service.num_classes)

    def _one_input(self, req: InferRequest) -> InferInput:
        if len(req.inputs) != 1:
            raise RequestError(
                f"model {self.name!r} takes exactly one input, 'video' (BYTES, one video file per "
                f"element) or 'frames' (UINT8 [T, H, W, 3]); got {len(req.inputs)}"
            )
        (inp,) = req.inputs
        if inp.name not in self.INPUTS:
            raise RequestError(f"unknown input {inp.name!r}; model {self.name!r} takes 'video' or 'frames'")
        want = self.INPUTS[inp.name][0]
        if inp.datatype != want:
            raise RequestError(f"input {inp.name!r} must be {want}, got {inp.datatype}")
        return inp

    async def _clips(self, inp: InferInput) -> list[tuple]:
        s, shape = self.service, inp.shape
        if inp.name == "video":
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
                raise RequestError(f"input 'video' has shape {shape}; send [N] (or [N, 1]): one video file per element")
            if shape[0] > s.limits.max_batch:
                raise RequestError(
                    f"input 'video' holds {shape[0]} videos, over this server's limit of {s.limits.max_batch}",
                    TOO_LARGE,
                )
            if inp.data.size != shape[0]:
                raise RequestError(f"input 'video' has {inp.data.size} elements but shape {shape} needs {shape[0]}")
            return await clips_from_videos(s.pipeline, list(inp.data))
        if len(shape) != 4 or shape[3] != 3 or any(d < 1 for d in shape):
            raise RequestError(f"input 'frames' has shape {shape}; send [T, H, W, 3] RGB frames of one clip")
        count = element_count(shape)  # within the element limit: both transports check it before decoding
        if inp.data.size != count:
            raise RequestError(f"input 'frames' has {inp.data.size} values but shape {shape} needs {count}")
        frames = inp.data.reshape(shape)
        return [await asyncio.to_thread(clip_from_frames, s.pipeline, frames)]

    async def infer(self, req: InferRequest, tag: str) -> InferResponse:
        _refuse_classification(req, "this model already answers the top-k classes (parameter top_k)")
        asked = [o.name for o in req.outputs]
        unknown = [n for n in asked if n not in self.OUTPUTS]
        if unknown:
            raise RequestError(f"unknown output(s) {unknown}; model {self.name!r} gives {list(self.OUTPUTS)}")
        top_k = self._top_k(req.parameters)
        start = time.perf_counter()
        clips, samplings = zip(*await self._clips(self._one_input(req)))
        if not asked:  # every output; sampling only when a clip was padded, so plain answers stay as they were
            asked = [n for n in self.OUTPUTS if n != "sampling" or any(x is not None for x in samplings)]
        decoded = time.perf_counter()
        answers = await self.service.classify(list(clips), top_k, tag)
        classified = time.perf_counter()
        labels = np.empty((len(answers), top_k), dtype=object)
        labels[:] = [[label.encode() for label in a.labels] for a in answers]
        arrays = {
            "label": labels,
            "class_id": np.array([a.classes for a in answers], dtype=np.int64),
            "prob": np.array([a.scores for a in answers], dtype=np.float32),
            "sampling": np.empty((len(answers), 1), dtype=object),
        }
        arrays["sampling"][:, 0] = [orjson.dumps(x.to_dict()) if x is not None else b"" for x in samplings]
        self.service.video_executed(
            len(clips), (decoded - start, classified - decoded, time.perf_counter() - classified)
        )
        return InferResponse(
            self.name,
            self.version,
            req.id,
            [InferOutput(n, self.OUTPUTS[n], list(arrays[n].shape), arrays[n]) for n in dict.fromkeys(asked)],
        )


def refuse_parameters(action: str, parameters: dict) -> None:
    """Load/unload parameters: Triton's clients send ``unload_dependents`` (no ensembles here: nothing depends on a
    model); a configuration or files sent with a load are refused, the repository folder is the source."""
    unknown = sorted(set(parameters) - {"unload_dependents"})
    if unknown:
        raise RequestError(
            f"{action} parameters {unknown} are not supported; the model and its configuration come "
            "from the repository folder"
        )


class V2Models:
    """The v2 models of a server's repository: ``NAME`` (tensors) and ``NAME_video`` of every served model."""

    def __init__(self, repo: ModelRepository):
        self.repo = repo

    def _split(self, name: str) -> tuple[str, type]:
        known = self.repo.knows
        if not known(name) and name.endswith("_video") and known(name.removesuffix("_video")):
            return name.removesuffix("_video"), VideoModel
        return name, TensorModel

    def get(self, name: str, version: str | None = "") -> V2Model:
        base, kind = self._split(name)
        try:
            service = self.repo.get(base, version)
        except RequestError as exc:
            if exc.kind == NOT_FOUND and base != name:
                raise RequestError(str(exc).replace(f"'{base}'", f"'{name}'"), NOT_FOUND) from None
            raise
        return kind(name, service, self.repo.versions(base))

    def names(self) -> list[str]:
        return [n for base in self.repo.names() for n in (base, f"{base}_video")]

    def stats(self, name: str = "", version: str = "") -> list[dict]:
        """Statistics of one model (every served version when none is named), or of every model."""
        if not name:
            return [
                kind(f"{base}{suffix}", service, []).stats()
                for base in self.repo.names()
                for service in self.repo.all_versions(base)
                for kind, suffix in ((TensorModel, ""), (VideoModel, "_video"))
            ]
        base, kind = self._split(name)
        if version:
            return [self.get(name, version).stats()]
        self.get(name)  # NOT_FOUND for an unknown model
        return [kind(name, service, []).stats() for service in self.repo.all_versions(base)]
