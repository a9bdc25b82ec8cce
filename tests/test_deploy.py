"""deploy/: the container recipe and the Kubernetes manifests, checked on paper (no cluster here).

Every manifest loads, kinds and ports agree with each other and with what vslim
serves, the RayService's Serve config passes Ray's own schema, and the committed
RayService is exactly what its generator prints today.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from vslim.cli.main import build_parser

DEPLOY = REPO / "deploy"


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


def test_every_manifest_loads_with_the_kinds_we_ship():
    kinds = sorted(d["kind"] for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in documents(f.name))
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "RayService", "Service"]


def test_vslim_serve_deployment_service_and_autoscaler_agree():
    by_kind = {d["kind"]: d for d in documents("vslim-serve.yaml")}
    deployment, service, hpa = by_kind["Deployment"], by_kind["Service"], by_kind["HorizontalPodAutoscaler"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    # the command is one vslim-serve accepts, and it listens where the probes and the Service look
    args = build_parser().parse_args(["serve", *container["command"][1:]])
    assert container["command"][0] == "vslim-serve" and args.port == ports["serving"] and args.host == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for probe in ("readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/v2/health/ready", "port": "serving"}
    assert pod["spec"]["terminationGracePeriodSeconds"] > args.grace_seconds
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (
        container["image"]
        == documents("rayservice.yaml")[0]["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
            "containers"
        ][0]["image"]
    )


def test_rayservice_is_what_its_generator_prints_today():
    env = {**os.environ, "VSLIM_SERVE": str(Path(sys.executable).parent / "vslim-serve")}
    fresh = subprocess.run(
        ["bash", str(DEPLOY / "k8s" / "generate.sh")], capture_output=True, text=True, env=env, timeout=300
    )
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout == (DEPLOY / "k8s" / "rayservice.yaml").read_text(), (
        "deploy/k8s/rayservice.yaml is stale: regenerate it with deploy/k8s/generate.sh > deploy/k8s/rayservice.yaml"
    )


def test_rayservice_serve_config_passes_rays_schema_and_names_the_ports():
    ray = pytest.importorskip("ray", reason="the ray extra is part of every set-up")
    from ray.serve.schema import ServeDeploySchema

    (service,) = documents("rayservice.yaml")
    assert service["apiVersion"] == "ray.io/v1"
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__  # the image's Ray must be the manifest's
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    assert schema.applications[0].import_path == "vslim.serving.rayserve.replica:build_app"
    http_port, grpc_port = config["http_options"]["port"], config["grpc_options"]["port"]
    assert config["http_options"]["host"] == "0.0.0.0"
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for group in pods:
        ports = {p["name"]: p["containerPort"] for p in group["template"]["spec"]["containers"][0]["ports"]}
        assert ports["serve"] == http_port and ports["serve-grpc"] == grpc_port
    deployment = config["applications"][0]["deployments"][0]
    worker = cluster["workerGroupSpecs"][0]
    cpus = float(worker["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    assert cpus >= deployment["ray_actor_options"]["num_cpus"]  # a worker pod fits one replica
    assert worker["replicas"] == deployment["num_replicas"]
    assert config["applications"][0]["args"]["server"]["bundle"].startswith("/models/bundle/")


def test_dockerfile_installs_the_pinned_stack_and_the_bundle_where_manifests_look():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'pip install .*-c constraints\.txt "\.\[cpu,ray\]"', text)
    assert "COPY ${BUNDLE} /models/bundle" in text
    for port in (9393, 8000, 9000):
        assert str(port) in re.search(r"^EXPOSE (.*)$", text, re.M)[1]
    # every package folder setup.cfg installs is copied in
    for folder in ("vslim", "compress", "serving", "lite", "benchmarks"):
        assert f"COPY {folder} {folder}" in text
    python = re.search(r"^FROM python:(\d+\.\d+)", text, re.M)[1]
    supported = re.findall(r"Programming Language :: Python :: (\d+\.\d+)", (REPO / "setup.cfg").read_text())
    assert python in supported, f"the image's Python {python} is not one vslim supports ({supported})"
