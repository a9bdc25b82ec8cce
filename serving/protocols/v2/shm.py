"""Triton's system shared memory extension: tensors handed over in POSIX shared memory, not sent.

A client on the same host creates a shared memory object (``shm_open``: a file in ``/dev/shm``), registers
a region of it by name (``v2/systemsharedmemory/region/NAME/register``, gRPC ``SystemSharedMemoryRegister``),
and then names the region in an input's or a requested output's parameters (``shared_memory_region``,
``shared_memory_byte_size``, optional ``shared_memory_offset``) instead of sending the bytes: the server
maps the region once and reads the input where it lies (a numpy view, no copy) and writes the output
there. For a 4.8 MB R50 clip that removes the client's encoding, the transfer, the relay and the server's
decoding from every request. tritonclient (``tritonclient.utils.shared_memory``) and perf_analyzer
(``--shared-memory system``) use it unmodified.

As Triton does (``--allow-client-shm``), the server refuses it unless started with ``--allow-client-shm``:
a registered region is memory the server reads and writes on a client's say-so. Keys are single names
under ``/dev/shm`` (no paths, no links); a region must lie inside its object; every tensor must lie inside
its region and match its shape and datatype exactly.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import INVALID, NOT_FOUND, UNSUPPORTED, RequestError
from .datatypes import BYTES, DTYPES, element_count

SHM_ROOT = Path("/dev/shm")
REGION, BYTE_SIZE, OFFSET = "shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"
PARAMETERS = (REGION, BYTE_SIZE, OFFSET)
EXTENSION = "system_shared_memory"
_KEY = re.compile(r"^/?[A-Za-z0-9_.-]{1,250}$")
NOT_ALLOWED = (
    "client shared memory is off on this server: start vslim-serve with --allow-client-shm (as Triton's "
    "--allow-client-shm) to let clients on this host register regions, or send the tensor in the request"
)


@dataclass
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    memory: mmap.mmap  # the object from 0 to offset + byte_size (mmap offsets must be page-aligned)

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}

    def span(self, offset: int, size: int, what: str) -> tuple[int, int]:
        """Where ``size`` bytes at ``offset`` into the region lie in the mapping, refused when outside it."""
        if offset < 0 or size < 0 or offset + size > self.byte_size:
            raise RequestError(
                f"{what}: {size} bytes at offset {offset} do not fit shared memory region {self.name!r} "
                f"({self.byte_size} bytes)"
            )
        return self.offset + offset, self.offset + offset + size


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestError(f"{what} must be a whole number >= 0, got {value!r}")
    return value


class SharedMemoryRegions:
    """The regions clients registered with this server (one set for every model and transport)."""

    def __init__(self, allowed: bool = False):
        self.allowed = allowed
        self._regions: dict[str, Region] = {}
        self._lock = threading.Lock()

    def _check_allowed(self) -> None:
        if not self.allowed:
            raise RequestError(NOT_ALLOWED, UNSUPPORTED)

    def register(self, name: str, key: str, offset: Any, byte_size: Any) -> dict:
        """Map ``byte_size`` bytes at ``offset`` of the object ``key`` as region ``name``; the (empty) answer."""
        self._check_allowed()
        offset, byte_size = _whole(offset, "offset"), _whole(byte_size, "byte_size")
        if not name:
            raise RequestError("a shared memory region needs a name")
        if byte_size == 0:
            raise RequestError(f"shared memory region {name!r}: byte_size must be > 0")
        if not isinstance(key, str) or not _KEY.match(key) or key.strip("/") in (".", ".."):
            raise RequestError(
                f"shared memory key {key!r} is not a POSIX shared memory name: give shm_open's name, e.g. "
                "'/my_region' (one name under /dev/shm, no folders)"
            )
        path = SHM_ROOT / key.lstrip("/")
        with self._lock:
            if name in self._regions:
                raise RequestError(
                    f"shared memory region {name!r} is already registered; unregister it first or use another name"
                )
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise RequestError(
                    f"cannot open shared memory key {key!r} ({exc.strerror}): create it on this host first "
                    "(shm_open / tritonclient.utils.shared_memory.create_shared_memory_region)",
                    NOT_FOUND if isinstance(exc, FileNotFoundError) else INVALID,
                ) from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise RequestError(f"shared memory key {key!r} is not a shared memory object")
                if offset + byte_size > info.st_size:
                    raise RequestError(
                        f"shared memory region {name!r}: {byte_size} bytes at offset {offset} run past the end of "
                        f"{key!r} ({info.st_size} bytes)"
                    )
                memory = mmap.mmap(fd, offset + byte_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                os.close(fd)
            self._regions[name] = Region(name, key, offset, byte_size, memory)
        return {}

    def unregister(self, name: str = "") -> dict:
        """One region, or every one when ``name`` is empty (the empty answer). Unknown names are not an error
        (Triton's way)."""
        self._check_allowed()
        with self._lock:
            for n in [name] if name else list(self._regions):
                region = self._regions.pop(n, None)
                if region is not None:
                    self._close(region)
        return {}

    @staticmethod
    def _close(region: Region) -> None:
        try:
            region.memory.close()
        except BufferError:  # a request still holds a view of it: the mapping goes when that view does
            pass

    def status(self, name: str = "") -> list[dict[str, Any]]:
        self._check_allowed()
        with self._lock:
            if name and name not in self._regions:
                raise RequestError(f"no shared memory region named {name!r} is registered", NOT_FOUND)
            return [r.status() for n, r in sorted(self._regions.items()) if not name or n == name]

    def _region(self, params: dict[str, Any], what: str) -> tuple[Region, int, int]:
        self._check_allowed()
        name = params.get(REGION)
        if BYTE_SIZE not in params or not isinstance(name, str):
            raise RequestError(f"{what}: shared memory needs both '{REGION}' (a name) and '{BYTE_SIZE}'")
        size = _whole(params[BYTE_SIZE], f"{what}: {BYTE_SIZE}")
        offset = _whole(params.get(OFFSET, 0), f"{what}: {OFFSET}")
        with self._lock:
            region = self._regions.get(name)
        if region is None:
            raise RequestError(f"{what}: no shared memory region named {name!r} is registered; register it first")
        return region, offset, size

    def read(self, params: dict[str, Any], datatype: str, shape: list[int], what: str) -> np.ndarray:
        """The input's flat elements where they lie in the region (a view: no copy)."""
        region, offset, size = self._region(params, what)
        if datatype == BYTES:
            raise RequestError(f"{what}: BYTES tensors travel in the request, not in shared memory")
        need = element_count(shape) * DTYPES[datatype].itemsize
        if size != need:
            raise RequestError(f"{what}: {BYTE_SIZE} {size}, but shape {shape} of {datatype} needs {need} bytes")
        start, end = region.span(offset, size, what)
        return np.frombuffer(
            region.memory, dtype=DTYPES[datatype], count=need // DTYPES[datatype].itemsize, offset=start
        )

    def write(self, params: dict[str, Any], array: np.ndarray, what: str) -> int:
        """Put an output's bytes in its region; the bytes written."""
        region, offset, size = self._region(params, what)
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        if data.dtype == object:
            raise RequestError(f"{what}: BYTES outputs travel in the response, not in shared memory")
        if data.nbytes > size:
            raise RequestError(f"{what}: the output is {data.nbytes} bytes, more than its {BYTE_SIZE} {size}")
        start, end = region.span(offset, data.nbytes, what)
        np.frombuffer(region.memory, np.uint8, count=end - start, offset=start)[:] = data.reshape(-1).view(np.uint8)
        return data.nbytes

    def close(self) -> None:
        with self._lock:
            for region in self._regions.values():
                self._close(region)
            self._regions.clear()


def uses_shm(params: dict[str, Any]) -> bool:
    return any(p in params for p in PARAMETERS)


_BY_REPOSITORY: weakref.WeakKeyDictionary[Any, SharedMemoryRegions] = weakref.WeakKeyDictionary()


def regions_of(repo) -> SharedMemoryRegions:
    """The server's regions (one set per model repository, shared by the HTTP and gRPC front ends)."""
    regions = _BY_REPOSITORY.get(repo)
    if regions is None:
        regions = _BY_REPOSITORY[repo] = SharedMemoryRegions(bool(getattr(repo.cfg, "allow_client_shm", False)))
    return regions
