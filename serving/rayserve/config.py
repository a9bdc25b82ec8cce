"""How a bundle is deployed on Ray Serve: replicas, their size, the proxies' ports.

One dataclass holds it; it turns into the deployment's options (for
``serve.run``) and into a Serve config file (``ServeDeploySchema``, what a
KubeRay ``RayService`` carries as ``serveConfigV2``), so the command line and
the Kubernetes manifest cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from vslim.errors import ConfigError
from vslim.serving.config import ServerConfig
from vslim.textnum import whole_number

DEPLOYMENT = "VslimReplica"
BUILDER = "vslim.serving.rayserve.replica:build_app"
PROXY_LOCATIONS = ("EveryNode", "HeadOnly", "Disabled")
# how requests reach a replica: through Ray's proxies (one address for the cluster), or straight to the replica's
# own HTTP and gRPC ports (Ray's direct ingress: no proxy hop; a load balancer in front spreads the load)
PROXY_INGRESS, DIRECT_INGRESS = "proxy", "direct"
INGRESS_MODES = (PROXY_INGRESS, DIRECT_INGRESS)
# Ray reads it at import in every Serve process (controller, replicas): it must be in the cluster's environment
DIRECT_INGRESS_ENV = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
# Ray's defaults: a replica that misses health checks for this long is replaced
HEALTH_CHECK_PERIOD_S, HEALTH_CHECK_TIMEOUT_S = 10.0, 30.0
# memory reserved per replica: Paddle's runtime plus a few copies of the weights (Ray packs by it too)
BASE_REPLICA_MB = 768


def parse_autoscale(text: str) -> tuple[int, int]:
    """``MIN:MAX`` replicas, e.g. ``1:4``."""
    low, sep, high = text.partition(":")
    lo, hi = whole_number(low), whole_number(high)
    if not sep or lo is None or hi is None or lo < 0 or hi < 1 or lo > hi:
        raise ConfigError(
            f"--autoscale {text!r} is not MIN:MAX replicas with 0 <= MIN <= MAX and MAX >= 1 (e.g. --autoscale 1:4)"
        )
    return lo, hi


@dataclass
class RayServeConfig:
    """``vslim-serve --ray ADDRESS``: the bundle's replicas on a Ray cluster behind Ray's proxies.

    ``server`` is what each replica serves and how (the same settings as one
    ``vslim-serve``; its ``threads`` equal ``cpus_per_replica``, because Ray sets
    ``OMP_NUM_THREADS`` from the CPUs it reserves). ``replicas`` is fixed unless
    ``autoscale`` gives (min, max), scaled on ``target_ongoing_requests`` per replica.
    """

    server: ServerConfig
    address: str = "local"  # "local": start a one-machine cluster; "auto" or HOST:PORT: join one
    name: str = "vslim"
    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 3.0
    downscale_delay_s: float = 30.0
    cpus_per_replica: float = 1.0
    memory_per_replica_mb: int | None = None
    max_replicas_per_node: int | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 9000
    route_prefix: str = "/"
    proxy_location: str = "EveryNode"
    ingress: str = PROXY_INGRESS
    runtime_env: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RayServeConfig:
        # `not x > 0` also refuses nan, which argparse's float() accepts
        if not 0 < self.cpus_per_replica < math.inf:
            raise ConfigError(f"--cpus-per-replica must be > 0, got {self.cpus_per_replica}")
        if self.replicas < 1:
            raise ConfigError(f"--replicas must be >= 1, got {self.replicas}")
        if not 0 < self.target_ongoing_requests < math.inf:
            raise ConfigError(f"--target-ongoing-requests must be > 0, got {self.target_ongoing_requests}")
        if self.max_replicas_per_node is not None and self.max_replicas_per_node < 1:
            raise ConfigError(f"--max-replicas-per-node must be >= 1, got {self.max_replicas_per_node}")
        if self.memory_per_replica_mb is not None and self.memory_per_replica_mb < 1:
            raise ConfigError(f"--memory-per-replica-mb must be >= 1, got {self.memory_per_replica_mb}")
        for flag, port in (("--port", self.http_port), ("--grpc-port", self.grpc_port)):
            if not 0 < port <= 65535:
                raise ConfigError(f"{flag} must be 1-65535 with --ray (Ray's proxies need a fixed port), got {port}")
        if self.http_port == self.grpc_port:
            raise ConfigError(
                f"--port and --grpc-port are both {self.http_port}: Ray's HTTP and gRPC proxies "
                "cannot share a port; give them two"
            )
        if self.proxy_location not in PROXY_LOCATIONS:
            raise ConfigError(
                f"--proxy-location must be one of {', '.join(PROXY_LOCATIONS)}, got {self.proxy_location!r}"
            )
        if self.ingress not in INGRESS_MODES:
            raise ConfigError(f"--ray-ingress must be one of {', '.join(INGRESS_MODES)}, got {self.ingress!r}")
        if self.ingress == DIRECT_INGRESS and self.server.tls_cert:
            raise ConfigError(
                "--ray-ingress direct serves the replicas' ports in plaintext: terminate TLS at the load balancer "
                "in front of them, or keep --ray-ingress proxy (Ray's HTTP proxy takes the certificate)"
            )
        if not self.name or "/" in self.name or "#" in self.name:
            raise ConfigError(f"--name {self.name!r}: give a name without '/' or '#'")
        if not self.route_prefix.startswith("/"):
            raise ConfigError(f"--route-prefix must start with '/', got {self.route_prefix!r}")
        self.server.validate()
        if self.server.model_control_mode != "none":
            raise ConfigError(
                f"--model-control-mode {self.server.model_control_mode} is not available with --ray: "
                "each replica loads the whole repository; to change models, deploy again (Ray rolls "
                "the replicas over one by one)"
            )
        return self

    @property
    def threads(self) -> int:
        """Paddle's math threads per worker: the replica's reserved CPUs shared by its workers (at least one)."""
        return max(1, int(self.cpus_per_replica) // (self.server.workers or 1))

    def replica_server(self) -> ServerConfig:
        """What one replica serves: the bundle as given, threads matching the reserved CPUs."""
        return dataclasses.replace(self.server, threads=self.threads, host="127.0.0.1", port=0)

    def replica_args(self) -> dict[str, Any]:
        """The replica's constructor argument: plain data, so it travels in a Serve config file."""
        return {"server": dataclasses.asdict(self.replica_server())}

    def max_ongoing_requests(self) -> int:
        """Requests one replica takes at once: a full batch on every worker, and one more round queued.

        No more: Ray's proxy prefers replicas on its own node and only overflows to
        others once these are full, so a deeper queue would idle the other replicas.
        """
        s = self.server
        return 2 * s.max_batch_size * (s.workers or 1)

    def deployment_options(self, bundle_bytes: int = 0) -> dict[str, Any]:
        """Options of the Serve deployment (``@serve.deployment`` / Serve config ``deployments[]``)."""
        memory_mb = self.memory_per_replica_mb or BASE_REPLICA_MB + 3 * (bundle_bytes >> 20) * (
            self.server.workers or 1
        )
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests(),
            "ray_actor_options": {"num_cpus": self.cpus_per_replica, "memory": memory_mb << 20},
            "health_check_period_s": HEALTH_CHECK_PERIOD_S,
            "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
            "graceful_shutdown_timeout_s": self.server.grace_seconds,
        }
        if self.server.device == "gpu":
            options["ray_actor_options"]["num_gpus"] = 1
        if self.runtime_env:
            options["ray_actor_options"]["runtime_env"] = self.runtime_env
        if self.autoscale:
            low, high = self.autoscale
            options["autoscaling_config"] = {
                "min_replicas": low,
                "max_replicas": high,
                "initial_replicas": max(low, 1),
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
            }
        else:
            options["num_replicas"] = self.replicas
        if self.max_replicas_per_node:
            options["max_replicas_per_node"] = self.max_replicas_per_node
        return options

    def serve_config(self, bundle_bytes: int = 0) -> dict[str, Any]:
        """A whole Serve config (``serve deploy`` / KubeRay ``serveConfigV2``) deploying this bundle."""
        from .ingress import SERVICER_FUNCTIONS

        deployment = {"name": DEPLOYMENT, **self.deployment_options(bundle_bytes)}
        return {
            "proxy_location": self.proxy_location,
            "http_options": {"host": self.http_host, "port": self.http_port},
            "grpc_options": {"port": self.grpc_port, "grpc_servicer_functions": list(SERVICER_FUNCTIONS)},
            "applications": [
                {
                    "name": self.name,
                    "route_prefix": self.route_prefix,
                    "import_path": BUILDER,
                    "args": self.replica_args(),
                    "deployments": [deployment],
                }
            ],
        }
