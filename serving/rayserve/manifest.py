"""Serve config files and KubeRay ``RayService`` manifests, generated from the same options as ``--ray``.

``vslim-serve --bundle B --ray-config`` prints the Serve config;
``--ray-config rayservice`` wraps it in a KubeRay ``RayService`` (``serveConfigV2``
holds the Serve config as a YAML string). ``deploy/k8s/rayservice.yaml`` is this
command's output, regenerated, not edited (a test compares them). Facts used
(docs/architecture.md, Ray Serve): ``ray.io/v1``; container ports named
``serve`` and ``serve-grpc``; ``rayVersion`` equal to the image's Ray.
"""

from __future__ import annotations

from typing import Any

import yaml

from vslim import __version__

from .config import DIRECT_INGRESS, DIRECT_INGRESS_ENV, RayServeConfig

RAY_VERSION = "2.60.0"
IMAGE = f"vslim-ray:{__version__}"  # built from deploy/Dockerfile
DASHBOARD_PORT, GCS_PORT = 8265, 6379


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks: ``serveConfigV2`` stays readable YAML inside the manifest."""

    def ignore_aliases(self, data) -> bool:  # a port list used twice is written twice, not as &id001
        return True


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None),
)


def dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False)


def validate_serve_config(config: dict[str, Any]) -> None:
    """Check ``config`` with Ray's own schema when Ray is installed (the file is plain YAML otherwise)."""
    try:
        from ray.serve.schema import ServeDeploySchema
    except ImportError:
        return
    ServeDeploySchema.model_validate(config) if hasattr(
        ServeDeploySchema, "model_validate"
    ) else ServeDeploySchema.parse_obj(config)


def serve_config(cfg: RayServeConfig, bundle_bytes: int = 0) -> dict[str, Any]:
    config = cfg.serve_config(bundle_bytes)
    validate_serve_config(config)
    return config


def serve_config_yaml(cfg: RayServeConfig, bundle_bytes: int = 0) -> str:
    text = dump(serve_config(cfg, bundle_bytes))
    if cfg.ingress == DIRECT_INGRESS:  # not a Serve config field: the cluster's environment carries it
        text = f"# direct ingress: start every node of the cluster with {DIRECT_INGRESS_ENV}=1 ray start ...\n{text}"
    return text


def _container(cfg: RayServeConfig, name: str, cpus: float, memory_mb: int, ports: list[dict]) -> dict[str, Any]:
    resources = {"cpu": f"{cpus:g}", "memory": f"{memory_mb}Mi"}
    container: dict[str, Any] = {
        "name": name,
        "image": IMAGE,
        "ports": ports,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    if cfg.ingress == DIRECT_INGRESS:  # every Serve process of the cluster reads it at start
        container["env"] = [{"name": DIRECT_INGRESS_ENV, "value": "1"}]
    return container


def rayservice(cfg: RayServeConfig, bundle_bytes: int = 0) -> dict[str, Any]:
    """A KubeRay ``RayService``: a head (proxies, controller, no replicas) and a worker group sized for the replicas."""
    config = serve_config(cfg, bundle_bytes)
    deployment = config["applications"][0]["deployments"][0]
    actor = deployment["ray_actor_options"]
    per_replica_mb = actor["memory"] >> 20
    low, high = cfg.autoscale if cfg.autoscale else (cfg.replicas, cfg.replicas)
    worker_ports = [
        {"name": "serve", "containerPort": cfg.http_port},
        {"name": "serve-grpc", "containerPort": cfg.grpc_port},
    ]
    head_ports = [
        {"name": "gcs", "containerPort": GCS_PORT},
        {"name": "dashboard", "containerPort": DASHBOARD_PORT},
        *worker_ports,
    ]
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": cfg.name.replace("_", "-").lower()},
        "spec": {
            "serveConfigV2": dump(config),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": cfg.autoscale is not None,
                "headGroupSpec": {
                    # num-cpus 0: replicas go to workers; the head runs the controller and a proxy
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": {"spec": {"containers": [_container(cfg, "ray-head", 1, 2048, head_ports)]}},
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "replicas",
                        "replicas": max(low, 1),
                        "minReplicas": max(low, 1),
                        "maxReplicas": max(high, 1),
                        "rayStartParams": {},
                        "template": {
                            "spec": {
                                "containers": [
                                    _container(cfg, "ray-worker", actor["num_cpus"], per_replica_mb + 512, worker_ports)
                                ]
                            }
                        },
                    }
                ],
            },
        },
    }


def rayservice_yaml(cfg: RayServeConfig, bundle_bytes: int = 0) -> str:
    header = (
        "# Generated by vslim-serve --ray-config rayservice (do not edit: regenerate it).\n"
        "# One worker pod per replica; the bundle is at the same path in the image (deploy/Dockerfile).\n"
    )
    return header + dump(rayservice(cfg, bundle_bytes))
