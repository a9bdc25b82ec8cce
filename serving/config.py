"""The server's configuration (``vslim-serve``) and the serving bundle's (``vslim-package --target serving``).

Ray Serve's lives in ``rayserve/config.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from vslim import runtime_registry
from vslim.config import PackageConfig, PredictorConfig
from vslim.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_WORKERS, DEFAULT_THREADS = 1, 2  # when neither flag is given and the bundle measured no layout


def flag(field: str) -> str:
    """The ``vslim-serve`` flag of a :class:`ServerConfig` field, which is what error messages name."""
    return "--" + field.replace("_", "-")


@dataclass
class ServerConfig:
    """``vslim-serve``: one bundle, or a model repository, served over gRPC and HTTP on one port.

    ``max_batch_size`` 1 turns dynamic batching off; above 1, requests of the same
    shape wait up to ``batch_timeout_ms`` to be merged. ``workers`` predictor clones
    run concurrently, each with ``threads`` CPU threads; neither given (None), the
    split the bundle measured fastest under load (``runtime.json``'s layout), else
    one worker of two threads (:meth:`for_bundle`). ``warmup`` runs every
    batch size up to ``max_batch_size`` on each worker before reporting ready.
    """

    bundle: str | None = None
    host: str = "127.0.0.1"
    port: int = 9393  # gRPC and HTTP on one port; HTTP's alone when grpc_port is set
    grpc_port: int | None = None  # Triton's layout: gRPC listens here itself, HTTP on port, nothing relayed
    workers: int | None = None  # None: the bundle's measured layout, else 1
    max_batch_size: int = 1
    batch_timeout_ms: float = 2.0
    device: str = "cpu"
    use_tensorrt: bool = False
    precision: str = "auto"
    runtime: str = "auto"  # the bundle's measured choice (runtime.json), else paddle
    threads: int | None = None  # None: the bundle's measured layout, else 2
    max_body_mb: int = 64
    max_request_batch: int = 64
    grace_seconds: float = 30.0
    verify_manifest: bool = True
    warmup: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    auth_token_file: str | None = None
    allow_client_shm: bool = False  # Triton's system shared memory extension (v2), as Triton's --allow-client-shm
    log_level: str = "info"  # of vslim-serve's own log (stderr); the start-up lines are printed at every level
    access_log: bool = True  # one line per HTTP request and gRPC call, at info
    # many models: a repository folder (serving/repository.py) instead of --bundle
    model_repository: str | None = None
    version_policy: str = "latest:1"
    default_model: str | None = None  # the model Paddle Serving's protocol reaches
    model_control_mode: str = "none"
    load_model: tuple[str, ...] = ()  # explicit mode: loaded at start ("*": all)
    repository_poll_secs: float = 15.0

    def validate(self) -> ServerConfig:
        """Each refusal names the ``vslim-serve`` flag to change, as the user typed it."""
        if bool(self.bundle) == bool(self.model_repository):
            raise ConfigError(
                "give --bundle PATH (one model) or --model-repository DIR (every model in DIR), not both"
                if self.bundle
                else "give --bundle PATH: the NAME_serving_server folder that `vslim-package --target "
                "serving --model-dir MODEL --out OUT` writes into OUT, or --model-repository DIR"
            )
        if self.model_repository and not Path(self.model_repository).is_dir():
            raise ConfigError(
                f"--model-repository {self.model_repository} is not a folder; give the folder that "
                "holds the models (DIR/NAME/VERSION/ or vslim bundles)"
            )
        if self.model_control_mode not in ("none", "explicit", "poll"):
            raise ConfigError(f"--model-control-mode must be none, explicit or poll, got {self.model_control_mode!r}")
        if self.bundle and self.model_control_mode != "none":
            raise ConfigError(
                f"--model-control-mode {self.model_control_mode} needs --model-repository DIR "
                "(a lone --bundle has nothing to load or poll)"
            )
        if self.load_model and self.model_control_mode != "explicit":
            raise ConfigError("--load-model is for --model-control-mode explicit (the other modes load every model)")
        if not 0 < self.repository_poll_secs < math.inf:
            raise ConfigError(f"--repository-poll-secs must be a number > 0, got {self.repository_poll_secs}")
        VersionPolicy.parse(self.version_policy)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0-65535 (0: any free port), got {self.port}")
        if self.grpc_port is not None:
            if not 0 <= self.grpc_port <= 65535:
                raise ConfigError(f"--grpc-port must be 0-65535 (0: any free port), got {self.grpc_port}")
            if self.grpc_port == self.port != 0:
                raise ConfigError(
                    f"--grpc-port {self.grpc_port} is --port's too: give gRPC a port of its own, or leave out "
                    "--grpc-port to serve both on one port"
                )
        for field, low in (
            ("workers", 1),
            ("threads", 1),
            ("max_batch_size", 1),
            ("max_body_mb", 1),
            ("max_request_batch", 1),
        ):
            if getattr(self, field) is not None and getattr(self, field) < low:
                raise ConfigError(f"{flag(field)} must be >= {low}, got {getattr(self, field)}")
        for field in ("batch_timeout_ms", "grace_seconds"):
            value = getattr(self, field)
            if not 0 <= value < math.inf:  # also refuses nan, which argparse's float() accepts
                raise ConfigError(f"{flag(field)} must be a number >= 0, got {value}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            given, missing = ("tls_cert", "tls_key") if self.tls_cert else ("tls_key", "tls_cert")
            raise ConfigError(
                f"TLS needs both --tls-cert and --tls-key; {flag(given)} was given without {flag(missing)}"
            )
        for field in ("tls_cert", "tls_key", "auth_token_file"):
            value = getattr(self, field)
            if value and not Path(value).exists():
                raise ConfigError(f"{flag(field)} {value} does not exist")
            if value and not Path(value).is_file():
                raise ConfigError(f"{flag(field)} {value} is a folder; give the file")
        self.predictor_config()
        return self

    def for_bundle(self, server_dir: Path | str) -> ServerConfig:
        """This config with ``workers`` and ``threads`` decided for one bundle: as given; neither given, the
        split its ``runtime.json`` measured fastest under load when it is served on the runtime measured;
        else one worker, two threads."""
        from vslim.inference.recorded import recorded_layout

        workers, threads = self.workers, self.threads
        if workers is None and threads is None and self.runtime == runtime_registry.AUTO and self.device == "cpu":
            layout = recorded_layout(server_dir)
            if layout is not None:
                workers, threads = layout["workers"], layout["threads"]
        return dataclasses.replace(self, workers=workers or DEFAULT_WORKERS, threads=threads or DEFAULT_THREADS)

    @property
    def split(self) -> tuple[int, int]:
        """(workers, threads) as they run: decided per bundle by :meth:`for_bundle`, the defaults where not."""
        return self.workers or DEFAULT_WORKERS, self.threads or DEFAULT_THREADS

    def predictor_config(self) -> PredictorConfig:
        return PredictorConfig(
            device=self.device,
            use_tensorrt=self.use_tensorrt,
            precision=self.precision,
            runtime=self.runtime,
            threads=self.split[1],
            streams=self.split[0],
            trt_max_batch_size=max(self.max_batch_size, 8),
        ).validate()


@dataclass
class ServingPackageConfig(PackageConfig):
    """``vslim-package --target serving``: a Paddle Serving bundle, optionally with a measured runtime choice.

    ``runtime`` ``paddle`` (the library default: nothing measured, nothing converted)
    serves with Paddle Inference; ``auto`` measures every CPU runtime and precision on
    this host and records the fastest that computes the model right (the CLI's
    default); one other runtime converts for it. ``val_list`` adds an accuracy guard,
    ``calib_list`` OpenVINO's own INT8 (NNCF) as a candidate.
    """

    runtime: str = "paddle"
    precision: str = "auto"
    threads: int = 2
    val_list: str | None = None
    calib_list: str | None = None

    def validate(self) -> ServingPackageConfig:
        runtime_registry.check_name(self.runtime, "--runtime")
        if self.precision not in ("auto", "fp32", "bf16", "int8"):
            raise ConfigError(f"--precision must be auto, fp32, bf16 or int8, got {self.precision!r}")
        if self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        return self


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model are served: Triton's ``latest:N``, ``all`` or ``specific:V,...``."""

    kind: str = "latest"
    count: int = 1
    versions: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        kind, _, arg = text.partition(":")
        try:
            if kind == "latest":
                policy = cls("latest", int(arg or 1))
                if policy.count >= 1:
                    return policy
            elif kind == "all" and not arg:
                return cls("all")
            elif kind == "specific":
                numbers = tuple(sorted({int(v) for v in arg.split(",")}))
                if numbers and min(numbers) >= 1:
                    return cls("specific", versions=numbers)
        except ValueError:
            pass
        raise ConfigError(
            f"--version-policy {text!r} is not understood; use latest:N (N >= 1), all, or "
            "specific:V[,V...] with versions >= 1"
        )

    def select(self, available) -> list[int]:
        available = sorted(available)
        if self.kind == "all":
            return available
        if self.kind == "specific":
            return [v for v in available if v in self.versions]
        return available[-self.count :]

    def __str__(self) -> str:
        return {"all": "all", "latest": f"latest:{self.count}"}.get(
            self.kind, "specific:" + ",".join(map(str, self.versions))
        )
