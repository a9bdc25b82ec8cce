"""``v2-grpc-shm``: the v2 gRPC client with its inputs handed over in system shared memory (Triton's extension).

For a client on the server's host: each input is copied once into a POSIX shared memory object this client
owns (``/dev/shm/vslim-client-PID-N``, mode 0600), registered with the server as a region, and the request
names the region instead of carrying the bytes; the answer (a few KB of scores) comes back in the response.
The server must run with ``--allow-client-shm``. tritonclient's own shared memory utilities do the same;
this client exists so vslim's CLI, benchmarks and soak tests can drive that path too.
"""

from __future__ import annotations

import itertools
import mmap
import os
from typing import Any

import numpy as np

from ...errors import ServingError
from .client import Inputs, V2GrpcClient
from .datatypes import datatype_of
from .proto import set_parameter
from .shm import BYTE_SIZE, OFFSET, REGION, SHM_ROOT

_COUNTER = itertools.count()
ALIGN = 64  # each input starts on a cache line


class V2GrpcShmClient(V2GrpcClient):
    protocol = "v2-grpc-shm"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for method, (req, resp) in {
            "SystemSharedMemoryRegister": ("SystemSharedMemoryRegisterRequest", "SystemSharedMemoryRegisterResponse"),
            "SystemSharedMemoryUnregister": (
                "SystemSharedMemoryUnregisterRequest",
                "SystemSharedMemoryUnregisterResponse",
            ),
        }.items():
            self._calls[method] = self._channel.unary_unary(
                f"/inference.GRPCInferenceService/{method}",
                request_serializer=getattr(self._pb, req).SerializeToString,
                response_deserializer=getattr(self._pb, resp).FromString,
            )
        self._key: str | None = None
        self._region = f"vslim-client-{os.getpid()}-{next(_COUNTER)}"
        self._memory: mmap.mmap | None = None
        self._size = 0

    def _ensure(self, size: int) -> mmap.mmap:
        """This client's region, (re)made and registered when ``size`` bytes no longer fit."""
        if self._memory is not None and size <= self._size:
            return self._memory
        self._release()
        key = f"/{self._region}"
        path = SHM_ROOT / key.lstrip("/")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ServingError(f"cannot create shared memory {path}: {exc.strerror}") from None
        try:
            os.ftruncate(fd, size)
            memory = mmap.mmap(fd, size)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        self._key, self._memory, self._size = key, memory, size
        try:
            self._call(
                "SystemSharedMemoryRegister",
                self._pb.SystemSharedMemoryRegisterRequest(name=self._region, key=key, offset=0, byte_size=size),
            )
        except ServingError:
            self._release()
            raise
        return memory

    def infer(
        self,
        model: str,
        inputs: Inputs,
        outputs: list[str] | None = None,
        parameters: dict[str, Any] | None = None,
        request_id: str = "",
    ) -> dict[str, np.ndarray]:
        arrays = {name: np.ascontiguousarray(np.asarray(a)) for name, a in inputs.items()}
        if any(a.dtype == object for a in arrays.values()):
            return super().infer(model, inputs, outputs, parameters, request_id)  # BYTES travel in the request
        offsets, total = {}, 0
        for name, array in arrays.items():
            offsets[name] = total
            total += -(-array.nbytes // ALIGN) * ALIGN
        memory = self._ensure(max(total, ALIGN))
        request = self._pb.ModelInferRequest(model_name=model, model_version=self.version, id=request_id)
        for name, array in arrays.items():
            start = offsets[name]
            np.frombuffer(memory, np.uint8, count=array.nbytes, offset=start)[:] = array.reshape(-1).view(np.uint8)
            tensor = request.inputs.add(name=name, datatype=datatype_of(array.dtype), shape=list(array.shape))
            set_parameter(tensor.parameters[REGION], self._region)
            set_parameter(tensor.parameters[BYTE_SIZE], array.nbytes)
            set_parameter(tensor.parameters[OFFSET], start)
        return self._send(request, outputs, parameters)

    def _release(self) -> None:
        if self._memory is None:
            return
        try:
            self._call("SystemSharedMemoryUnregister", self._pb.SystemSharedMemoryUnregisterRequest(name=self._region))
        except ServingError:
            pass  # the server is gone: nothing to unregister
        finally:
            self._memory.close()
            if self._key:
                (SHM_ROOT / self._key.lstrip("/")).unlink(missing_ok=True)
            self._memory, self._key, self._size = None, None, 0

    def close(self) -> None:
        self._release()
        super().close()
