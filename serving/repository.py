"""The models one server serves: a model repository with versions, loaded and unloaded while serving.

A repository folder holds, side by side (``vslim-serve --model-repository DIR``):

* Triton's layout, ``DIR/NAME/VERSION/`` (``VERSION`` a whole number >= 1) holding a bundle: the
  folder ``vslim-package --target serving`` wrote (its ``NAME_serving_server`` half and manifest) or the
  server half itself. The model is ``NAME`` whatever the bundle's own name. ``DIR/NAME/config.pbtxt``, as
  Triton reads it, may set that model's batching: ``max_batch_size`` with ``dynamic_batching``
  (``max_queue_delay_microseconds``) and ``instance_group [{count}]`` (workers); the command line's
  flags are every other model's settings.
* vslim's own bundles as written: ``DIR/OUT/`` (``vslim-package``'s output folder) or
  ``DIR/NAME_serving_server/``; model ``NAME``, version ``1``.

``--bundle B`` is a repository of that one bundle. Each model version has its own
:class:`~.service.ModelService` (engine, workers, statistics); they share the port, auth, limits
and metrics. ``--version-policy`` picks the versions served (Triton's: ``latest:N``, ``all``,
``specific:1,3``); a request without a version reaches the newest ready one.

Model control (Triton's modes): ``none`` loads everything at start and refuses load/unload;
``explicit`` loads what ``--load-model`` names (``*``: all) and then what clients ask for;
``poll`` loads everything and rescans ``DIR`` every ``--repository-poll-secs``. A load of a
model already served is a reload: new versions are loaded while the old ones keep answering, then
the old ones are unloaded; a version that fails to load leaves what is served untouched. An
unloaded version stops taking requests, finishes those it admitted, then frees its engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from vslim.errors import ConfigError, VslimError

from .bundle import SERVER_SUFFIX, _has_server_conf, load_bundle
from .config import ServerConfig, VersionPolicy
from .errors import INVALID, NOT_FOUND, UNAVAILABLE, RequestError, ServingError
from .prometheus import ServerMetrics
from .service import ModelService

READY, LOADING, UNLOADING, UNAVAILABLE_STATE = "READY", "LOADING", "UNLOADING", "UNAVAILABLE"
CONTROL_MODES = ("none", "explicit", "poll")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_VERSION_DIR = re.compile(r"[1-9][0-9]*")
TRITON_CONFIG = "config.pbtxt"


# --------------------------------------------------------------------------- what a folder holds


@dataclass(frozen=True)
class ModelSource:
    """One version of one model on disk."""

    name: str
    version: int
    server_dir: Path
    settings: tuple = ()  # (field, value) pairs of ServerConfig this model overrides (config.pbtxt)

    @property
    def fingerprint(self) -> tuple:
        """Changes when any file of the version changes (poll mode reloads it then)."""
        root = self.server_dir.parent if (self.server_dir.parent / "vslim_manifest.json").is_file() else self.server_dir
        return (
            tuple(
                sorted(
                    (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                    for p in root.rglob("*")
                    if p.is_file()
                )
            )
            + self.settings
        )


def _server_half(folder: Path) -> Path | None:
    """The bundle's server half in a version folder: the folder itself, or the one NAME_serving_server in it."""
    if _has_server_conf(folder):
        return folder
    halves = sorted(d for d in folder.glob(f"*{SERVER_SUFFIX}") if d.is_dir())
    return halves[0] if len(halves) == 1 else None


def _triton_settings(model_dir: Path) -> tuple:
    """The batching ``DIR/NAME/config.pbtxt`` asks for, as ServerConfig fields (Triton's fields, the rest ignored)."""
    path = model_dir / TRITON_CONFIG
    if not path.is_file():
        return ()
    from .protocols.v2.proto import pb

    try:
        conf = text_format.Parse(path.read_text(encoding="utf-8"), pb.ModelConfig(), allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ServingError(f"{path} is not a model configuration Triton would read: {exc}") from exc
    settings = {}
    if conf.HasField("dynamic_batching") and conf.max_batch_size > 1:
        settings["max_batch_size"] = conf.max_batch_size
        settings["batch_timeout_ms"] = conf.dynamic_batching.max_queue_delay_microseconds / 1000
    elif conf.max_batch_size > 0:
        settings["max_batch_size"] = 1  # Triton batches only with a dynamic batcher
    if conf.instance_group and conf.instance_group[0].count > 0:
        settings["workers"] = conf.instance_group[0].count
    return tuple(sorted(settings.items()))


def scan(root: Path) -> dict[str, dict[int, ModelSource]]:
    """Every model version under ``root``; two models of one name are refused (say which folders)."""
    if not root.is_dir():
        raise ServingError(f"model repository {root} is not a folder; give the folder holding the models")
    found: dict[str, dict[int, ModelSource]] = {}
    where: dict[str, Path] = {}

    def add(name: str, version: int, server: Path, origin: Path, settings: tuple = ()) -> None:
        if name in where and where[name] != origin:
            raise ServingError(
                f"two models are named {name!r} in {root}: {where[name]} and {origin}; rename one "
                "(v2 and the Paddle Serving protocol find models by name)"
            )
        where[name] = origin
        found.setdefault(name, {})[version] = ModelSource(name, version, server, settings)

    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = sorted((int(d.name), d) for d in child.iterdir() if d.is_dir() and _VERSION_DIR.fullmatch(d.name))
        if versions:  # Triton's layout
            settings = _triton_settings(child)
            for number, folder in versions:
                server = _server_half(folder)
                if server is not None:
                    add(child.name, number, server, child, settings)
            found.setdefault(child.name, {})
            where.setdefault(child.name, child)
        elif _has_server_conf(child) or child.name.endswith(SERVER_SUFFIX):
            add(child.name.removesuffix(SERVER_SUFFIX), 1, child, child)
        else:
            for server in sorted(d for d in child.glob(f"*{SERVER_SUFFIX}") if d.is_dir()):
                add(server.name.removesuffix(SERVER_SUFFIX), 1, server, server)
    for name in found:
        if not MODEL_NAME.fullmatch(name):
            raise ServingError(f"model folder {where[name]}: {name!r} is not a model name (letters, digits, _ . -)")
        if name.endswith("_video") and name.removesuffix("_video") in found:
            raise ServingError(
                f"models {name.removesuffix('_video')!r} and {name!r} in {root}: v2 serves every "
                f"model NAME as NAME_video too, so {name!r} would be both; rename it"
            )
    return found


def single_bundle(path: Path) -> dict[str, dict[int, ModelSource]]:
    """``--bundle B``: a repository of one model, version 1."""
    name = Path(path).name.removesuffix(SERVER_SUFFIX)
    return {name: {1: ModelSource(name, 1, Path(path))}}


# --------------------------------------------------------------------------- what is served


@dataclass
class Served:
    """One served model version and how it came to be."""

    source: ModelSource
    service: ModelService
    fingerprint: tuple
    state: str = LOADING
    reason: str = ""


class ModelRepository:
    """Every served model version, found by name and version, loaded and unloaded while serving.

    ``opener(cfg, source, metrics)`` builds a loaded :class:`ModelService` (blocking; server.py's, which
    verifies the bundle and starts its engine). All changes happen on the event loop, one at a time.
    """

    def __init__(
        self,
        cfg: ServerConfig,
        opener: Callable[[ServerConfig, ModelSource, ServerMetrics], ModelService],
        metrics: ServerMetrics | None = None,
        log: Callable[[str], None] = lambda _: None,
    ):
        self.cfg = cfg
        self.metrics = metrics or ServerMetrics()
        self.opener = opener
        self.log = log
        self.root = Path(cfg.model_repository) if cfg.model_repository else None
        self.policy = VersionPolicy.parse(cfg.version_policy)
        self.mode = cfg.model_control_mode
        self.default = cfg.default_model
        self.served: dict[str, dict[int, Served]] = {}
        self.failed: dict[tuple[str, int], str] = {}  # versions whose last load failed: the reason
        self.unloaded: set[str] = set()
        self.loading: dict[str, set[int]] = {}  # versions being loaded (their requests: UNAVAILABLE)
        self.started = False
        self.draining = False
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ reading
    def sources(self) -> dict[str, dict[int, ModelSource]]:
        if self.root:
            return scan(self.root)
        if not self.cfg.bundle:  # ServerConfig.validate() refuses this
            raise ConfigError("give --bundle PATH (one model) or --model-repository DIR (every model in DIR)")
        return single_bundle(Path(self.cfg.bundle))

    def _model_folder(self, name: str) -> Path | str | None:
        """Where model ``name``'s version folders are, for messages: in the repository, else the bundle."""
        return self.root / name if self.root else self.cfg.bundle

    @property
    def ready(self) -> bool:
        """The server takes requests: its start-up models are loaded and it is not draining."""
        return self.started and not self.draining

    def names(self) -> list[str]:
        return sorted(n for n, versions in self.served.items() if versions)

    def knows(self, name: str) -> bool:
        """Served, or being loaded."""
        return bool(self.served.get(name) or self.loading.get(name))

    def versions(self, name: str) -> list[str]:
        return [str(v) for v in sorted(self.served.get(name, {}))]

    def all_versions(self, name: str) -> list[ModelService]:
        return [s.service for _, s in sorted(self.served.get(name, {}).items())]

    def services(self) -> list[ModelService]:
        return [s.service for versions in self.served.values() for s in versions.values()]

    def get(self, name: str, version: str | None = "") -> ModelService:
        """The service of ``name`` at ``version`` (empty: the newest ready one); NOT_FOUND or UNAVAILABLE."""
        versions = self.served.get(name)
        if not versions and self.loading.get(name):
            raise RequestError(f"model '{name}' is loading; retry when it is ready", UNAVAILABLE)
        if not versions:  # Triton's wording; the served names are not listed (model ready needs no token)
            raise RequestError(f"Request for unknown model: '{name}' is not found", NOT_FOUND)
        if version:
            number = int(version) if _VERSION_DIR.fullmatch(version) else None
            if number in self.loading.get(name, ()) and number not in versions:
                raise RequestError(f"model '{name}' version {version} is loading; retry when it is ready", UNAVAILABLE)
            if number not in versions:
                raise RequestError(
                    f"Request for unknown model: '{name}' version {version} is not found; it has "
                    f"version(s) {', '.join(map(str, sorted(versions)))}",
                    NOT_FOUND,
                )
            return versions[number].service
        ready = [v for v, s in versions.items() if s.service.ready]
        return versions[max(ready or versions)].service

    def default_service(self) -> ModelService:
        """The model Paddle Serving's protocol reaches (it names none): ``--default-model``, else the only one."""
        names = self.names()
        if self.default:
            return self.get(self.default)
        if len(names) == 1:
            return self.get(names[0])
        if not names:
            raise RequestError("no model is loaded; load one (POST /v2/repository/models/NAME/load)", UNAVAILABLE)
        raise RequestError(
            f"this server serves {len(names)} models and Paddle Serving's protocol names none; "
            "restart it with --default-model NAME, or use v2 (it names the model)",
            NOT_FOUND,
        )

    def index(self, ready_only: bool = False) -> list[dict]:
        """Triton's repository index: every model version and its state (unloaded and failed ones too)."""
        rows = {}
        if self.root:
            try:
                for name, versions in self.sources().items():
                    if not versions:
                        rows[(name, 0)] = (UNAVAILABLE_STATE, "no version folder holds a bundle")
                    for number in versions:
                        rows[(name, number)] = (
                            UNAVAILABLE_STATE,
                            "unloaded"
                            if name in self.unloaded
                            else "not loaded (excluded by the version policy or not asked for)",
                        )
            except VslimError as exc:
                self.log(f"warning: cannot read the model repository: {exc}")
        for (name, number), reason in self.failed.items():
            rows[(name, number)] = (UNAVAILABLE_STATE, reason)
        for name, numbers in self.loading.items():
            for number in numbers:
                rows[(name, number)] = (LOADING, "")
        for name, served in self.served.items():
            for number, s in served.items():
                rows[(name, number)] = (READY if s.service.ready and s.state == READY else s.state, s.reason)
        out = [
            {"name": n, "version": str(v) if v else "", "state": st, "reason": why}
            for (n, v), (st, why) in sorted(rows.items())
        ]
        return [r for r in out if r["state"] == READY] if ready_only else out

    def record(self, protocol: str, endpoint: str, start: float, error=None) -> None:
        """A request refused before any model was found (unknown name): the server's series, model label empty."""
        from .service import record_request

        record_request(self.metrics.for_model(""), protocol, endpoint, start, error)

    # ------------------------------------------------------------------ changing
    def check_default(self, sources: dict) -> None:
        """``--default-model`` must name a model of the repository, and is required when it holds several."""
        if self.default and self.default not in sources:
            raise ConfigError(
                f"--default-model {self.default!r} is not a model of {self.root or self.cfg.bundle}; "
                f"it holds: {', '.join(sorted(sources)) or 'no models'}"
            )
        if not self.default and len(sources) > 1:
            raise ConfigError(
                f"{self.root} holds {len(sources)} models ({', '.join(sorted(sources))}): give "
                "--default-model NAME, the one Paddle Serving's protocol (which names no model) reaches"
            )

    async def start(self, load: list[str] | None = None) -> None:
        """Load the start-up models (every model, or in explicit mode the ``--load-model`` ones); a failure is fatal."""
        sources = self.sources()
        self.check_default(sources)
        if self.mode == "explicit":
            names = sorted(sources) if load and "*" in load else list(load or [])
            unknown = [n for n in names if n not in sources]
            if unknown:
                raise ConfigError(
                    f"--load-model {', '.join(unknown)}: not in {self.root}; it holds "
                    f"{', '.join(sorted(sources)) or 'no models'}"
                )
        else:
            names = sorted(sources)
        for name in names:
            if not sources[name]:
                raise ServingError(f"model {name}: no version folder under {self._model_folder(name)} holds a bundle")
            async with self._lock:
                await self._apply(name, sources[name], fatal=True)
        self.started = True

    def start_blocking(self) -> None:
        """Load every model now, in this thread (a Ray replica's constructor: no event loop yet)."""
        sources = self.sources()
        self.check_default(sources)
        for name, versions in sorted(sources.items()):
            if not versions:
                raise ServingError(f"model {name}: no version folder under {self._model_folder(name)} holds a bundle")
            for number in self.policy.select(versions):
                source = versions[number]
                service = self.opener(self._config_for(source), source, self.metrics)
                self.served.setdefault(name, {})[number] = Served(source, service, source.fingerprint, READY)
        self.started = True

    def _check_control(self, action: str, name: str) -> None:
        if self.mode != "explicit":
            raise RequestError(
                f"{action} is refused: this server runs with --model-control-mode {self.mode} "
                "(load and unload need --model-control-mode explicit)",
                INVALID,
            )
        if not MODEL_NAME.fullmatch(name or ""):
            raise RequestError(
                f"{action} of {name!r} is refused: give a model name of the repository (letters, "
                "digits, _ . -), not a path",
                INVALID,
            )
        if self.draining:
            raise RequestError("the server is shutting down", UNAVAILABLE)

    async def load(self, name: str) -> None:
        """Load (or reload) ``name`` from the repository; the reason of a failure is the refusal's message."""
        self._check_control("load", name)
        async with self._lock:
            try:
                sources = self.sources()
            except VslimError as exc:
                raise RequestError(f"cannot read the model repository: {exc}", INVALID) from exc
            if name not in sources:
                hint = f"; {name.removesuffix('_video')} serves it" if name.endswith("_video") else ""
                raise RequestError(f"no model {name!r} in the model repository {self.root}{hint}", NOT_FOUND)
            if not sources[name]:
                raise RequestError(f"model {name!r}: no version folder holds a bundle", INVALID)
            self.unloaded.discard(name)
            await self._apply(name, sources[name])

    async def unload(self, name: str) -> None:
        """Stop serving ``name``: new requests are refused, admitted ones finish, then its engines close."""
        self._check_control("unload", name)
        async with self._lock:
            if name not in self.served:
                if self.root and name in self.sources():
                    return  # not loaded: nothing to do (Triton answers success)
                raise RequestError(f"Request for unknown model: '{name}' is not found", NOT_FOUND)
            versions = self.served[name]
            self.unloaded.add(name)
            await asyncio.gather(*(self._retire(name, v) for v in list(versions)))

    async def poll(self) -> None:
        """Rescan: load new models and versions, reload changed ones, unload removed ones (errors logged)."""
        async with self._lock:
            try:
                sources = self.sources()
            except VslimError as exc:
                self.log(f"warning: repository poll: {exc}")
                return
            for name in sorted(set(sources) | set(self.served)):
                versions = sources.get(name, {})
                if not versions and name in self.served:
                    self.log(f"model {name} left the repository: unloading it")
                    await asyncio.gather(*(self._retire(name, v) for v in list(self.served[name])))
                    continue
                current = {v: s.fingerprint for v, s in self.served.get(name, {}).items()}
                wanted = {v: versions[v].fingerprint for v in self.policy.select(versions)}
                if wanted != current and versions:
                    try:
                        await self._apply(name, versions)
                    except RequestError as exc:
                        self.log(f"warning: repository poll: {exc}")

    async def _apply(self, name: str, versions: dict[int, ModelSource], fatal: bool = False) -> None:
        """Serve the versions the policy picks: load what is new or changed, then retire what is not wanted."""
        wanted = self.policy.select(versions)
        current = self.served.setdefault(name, {})
        fresh = [v for v in wanted if v not in current or current[v].fingerprint != versions[v].fingerprint]
        loaded: dict[int, Served] = {}
        for number in fresh:
            source = versions[number]
            self.log(f"loading {name} version {number} from {source.server_dir}")
            t0 = time.perf_counter()
            self.loading.setdefault(name, set()).add(number)
            try:
                fingerprint = source.fingerprint
                service = await asyncio.to_thread(self.opener, self._config_for(source), source, self.metrics)
            except Exception as exc:
                self.loading[name].discard(number)
                for s in loaded.values():  # keep what was served: nothing of this load stays
                    await self._close(s)
                if not current:
                    self.served.pop(name, None)
                reason = f"failed to load {name} version {number}: {exc}"
                self.failed[(name, number)] = reason
                if fatal:
                    raise ServingError(reason) from exc
                self.log(f"warning: {reason}")
                raise RequestError(reason, INVALID) from exc
            self.loading[name].discard(number)
            self.failed.pop((name, number), None)
            loaded[number] = Served(source, service, fingerprint, READY)
            self.log(f"loaded {name} version {number} in {time.perf_counter() - t0:.1f}s")
        old = {v: current[v] for v in loaded if v in current}
        current.update(loaded)
        for s in old.values():
            await self._close(s)
        for number in [v for v in current if v not in wanted]:
            await self._retire(name, number)

    async def _retire(self, name: str, number: int) -> None:
        served = self.served.get(name, {}).get(number)
        if served is None:
            return
        served.state, served.reason = UNLOADING, "unloading: finishing admitted requests"
        self.log(f"unloading {name} version {number}")
        await self._close(served)
        self.served.get(name, {}).pop(number, None)
        if name in self.served and not self.served[name]:
            del self.served[name]

    async def _close(self, served: Served) -> None:
        """Refuse new requests, wait for admitted ones (up to the grace period), then stop the engine."""
        service = served.service
        service.unloading = True
        deadline = time.monotonic() + self.cfg.grace_seconds
        while service.active and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if service.engine is not None:
            await asyncio.to_thread(service.engine.close, self.cfg.grace_seconds)
        service.metrics.ready.set(0)

    def _config_for(self, source: ModelSource) -> ServerConfig:
        return dataclasses.replace(self.cfg, bundle=str(source.server_dir), **dict(source.settings))

    async def close(self) -> None:
        """Drain: every model refuses new requests and finishes what it admitted."""
        self.draining = True
        for service in self.services():
            service.draining = True
        await asyncio.gather(*(self._close(s) for versions in self.served.values() for s in versions.values()))


async def poll_forever(repo: ModelRepository, seconds: float) -> None:
    while not repo.draining:
        await asyncio.sleep(seconds)
        if not repo.draining:
            await repo.poll()


def startup_bundles(cfg: ServerConfig) -> list:
    """Verify every bundle a server of ``cfg`` loads at start (``--bundle``, or each version the policy picks):
    what a Ray deployment checks before it touches the cluster, and sizes its replicas by."""

    def no_opener(*_: object) -> ModelService:
        raise ServingError("startup_bundles only reads the repository; it loads no model")

    repo = ModelRepository(cfg, opener=no_opener)
    sources = repo.sources()
    repo.check_default(sources)
    picked = [versions[v] for versions in sources.values() for v in repo.policy.select(versions)]
    return [load_bundle(s.server_dir, verify=cfg.verify_manifest) for s in picked]
