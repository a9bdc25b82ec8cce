"""Scale-out on a real multi-node Ray cluster (a head and a worker node on this machine, ``ray.cluster_utils``).

The tests run in file order on one cluster and one Serve instance: the command
line first, then one application ("vslim") that each test redeploys or disturbs:
placement and answers, bad input, replica loss, node loss, a rolling update
from FP32 to INT8, autoscaling with a token. Ray's proxies run on the head only
(two proxies of one machine would fight over the same ports).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import test_serving
import test_v2

from vslim.accuracy import softmax
from vslim.data import ClipPipeline
from vslim.data.decode import VideoReader
from vslim.inference import PaddlePredictor
from vslim.netports import listening_port
from vslim.serving.client import ClientConfig, GrpcClient, HttpClient, VideoEndpointClient
from vslim.serving.config import ServerConfig
from vslim.serving.process import serve_command
from vslim.serving.protocols.v2.client import V2GrpcClient, V2HttpClient

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the ray extra (pip install 'vslim[ray]') is part of every set-up")

APP = "vslim"


HTTP_PORT = listening_port()
GRPC_PORT = listening_port(taken=(HTTP_PORT,))
TARGET = types.SimpleNamespace(url=f"http://127.0.0.1:{HTTP_PORT}", address=f"127.0.0.1:{GRPC_PORT}")


@pytest.fixture(scope="module")
def cluster():
    from ray import serve
    from ray.cluster_utils import Cluster

    # One proxy (on the head) for both nodes: spread its requests evenly instead of to its own node first
    # (docs/scale-out.md). The cluster's processes inherit this environment.
    os.environ["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"] = "0"
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "_system_config": {"metrics_report_interval_ms": 1000},
        },
    )  # Ray's 10 s default only slows the test
    worker = c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    c.worker = worker
    yield c
    serve.shutdown()
    ray.shutdown()
    c.shutdown()


def ray_config(cluster, bundle, **options):
    from vslim.serving.rayserve.config import RayServeConfig

    server = dict(options.pop("server", {}))
    return RayServeConfig(
        server=ServerConfig(bundle=str(bundle), max_body_mb=16, grace_seconds=10, **server),
        address=cluster.address,
        name=APP,
        http_port=HTTP_PORT,
        grpc_port=GRPC_PORT,
        proxy_location="HeadOnly",
        **options,
    ).validate()


def deploy(cluster, bundle, **options):
    from vslim.serving.rayserve.launcher import deploy as run
    from vslim.serving.rayserve.launcher import start_serve

    cfg = ray_config(cluster, bundle, **options)
    start_serve(cfg, log=print)
    run(cfg, log=print)
    return cfg


def running(name=APP) -> list[dict]:
    from vslim.serving.rayserve.launcher import replica_nodes

    return [r for r in replica_nodes(name) if r["state"] == "RUNNING"]


def wait_for(what, predicate, timeout=180.0, every=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Stream:
    """Clients sending one clip over and over from threads: every answer's first logit, every error, with times."""

    def __init__(self, make_client, clip, threads=2):
        self.answers: list[tuple[float, float]] = []
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(make_client, clip), daemon=True) for _ in range(threads)
        ]
        for t in self._threads:
            t.start()

    def _run(self, make_client, clip):
        with make_client() as client:
            while not self._stop.is_set():
                try:
                    out = client.predict({"data_batch_0": clip})["outputs"]
                    self.answers.append((time.monotonic(), float(out[0, 0])))
                except Exception as exc:
                    self.errors.append((time.monotonic(), str(exc)[:200]))
                    time.sleep(0.05)

    def stop(self) -> Stream:
        self._stop.set()
        for t in self._threads:
            t.join(90)
        return self


def grpc_client(bundle):
    return lambda: GrpcClient(TARGET.address, ClientConfig.load(bundle.client), timeout=30)


def assert_answers_like_in_process(bundle, val_clips, target=TARGET):
    """Every protocol through Ray's proxies gives what Paddle Inference gives in-process for the same clips."""
    TARGET = target  # noqa: N806 (the module's proxies unless given a replica's own ports)
    clips, _, paths = val_clips
    expected = PaddlePredictor(bundle.server).run(clips[:4])
    atol = 1e-4 * np.abs(expected).max()
    conf = ClientConfig.load(bundle.client)
    clients = [
        GrpcClient(TARGET.address, conf),
        HttpClient(TARGET.url, conf, mode="json"),
        HttpClient(TARGET.url, conf, mode="proto"),
        V2HttpClient(TARGET.url, conf),
        V2GrpcClient(TARGET.address, conf),
    ]
    for client in clients:
        with client:
            for i in range(4):
                out = client.predict({"data_batch_0": clips[i : i + 1]})["outputs"]
                np.testing.assert_allclose(out, expected[i : i + 1], atol=atol, err_msg=client.protocol)
            np.testing.assert_allclose(client.predict({"data_batch_0": clips[:4]})["outputs"], expected, atol=atol)
    pipeline, predictor = ClipPipeline(conf.meta.preprocess), PaddlePredictor(bundle.server)
    with VideoReader(paths[0]) as reader:
        frames = reader.read(range(reader.num_frames))
    probs = softmax(predictor.run(pipeline.from_frames(frames)[None]))[0]
    answer = VideoEndpointClient(TARGET.url).predict_frames(frames)
    assert answer["err_no"] == 0 and eval(answer["value"][0]) == [conf.meta.labels[int(probs.argmax())]]
    with V2HttpClient(TARGET.url, conf) as v2:
        top = v2.classify_files([paths[0]], 3)[0]
    file_probs = softmax(predictor.run(pipeline.from_video(paths[0])[None]))[0]
    assert top.classes[0] == int(file_probs.argmax()) and abs(top.scores[0] - file_probs.max()) < 1e-4


# --------------------------------------------------------------------------- the command line


def test_vslim_serve_ray_deploys_reports_and_removes(cluster, bundle_fp32, bundle_int8, tmp_path):
    """A model repository (two models in Triton's and vslim's layouts) deployed from the command line: every
    replica serves both, by name through both of Ray's proxies, and the default one over Paddle Serving's."""
    import shutil

    from ray import serve

    repository = tmp_path / "models"
    shutil.copytree(bundle_fp32.root, repository / "fp32-out")  # model "small", version 1
    shutil.copytree(bundle_int8.root, repository / "int8" / "3")  # model "int8", version 3
    cmd = [
        *serve_command(),
        "--model-repository",
        str(repository),
        "--default-model",
        "small",
        "--ray",
        cluster.address,
        "--name",
        "cli",
        "--port",
        str(HTTP_PORT),
        "--grpc-port",
        str(GRPC_PORT),
        "--proxy-location",
        "HeadOnly",
        "--cpus-per-replica",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once every replica is up
        assert line.startswith("http="), (line, proc.stderr.read() if proc.poll() is not None else "")
        assert line.split() == [f"http=http://127.0.0.1:{HTTP_PORT}", f"grpc=127.0.0.1:{GRPC_PORT}"]
        clip = np.zeros([1, 8, 3, 64, 64], "float32")
        with GrpcClient(TARGET.address, ClientConfig.load(bundle_fp32.client)) as c:
            default = c.predict({"data_batch_0": clip})["outputs"]
        with V2HttpClient(TARGET.url.removeprefix("http://"), model="small") as c:
            np.testing.assert_array_equal(c.infer("small", {"data_batch_0": clip})["outputs"], default)
            assert c.model_metadata("int8")["versions"] == ["3"]
            assert [m["name"] for m in c.repository_index()] == ["int8", "small"]
        with V2GrpcClient(TARGET.address, model="int8", version="3") as c:
            int8 = c.infer("int8", {"data_batch_0": clip})["outputs"]
        assert int8.shape == (1, 10) and not np.array_equal(int8, default)
        status = subprocess.run(
            [*serve_command(), "--ray", cluster.address, "--status"], capture_output=True, text=True, timeout=120
        )
        assert status.returncode == 0, status.stderr
        app = json.loads(status.stdout)["applications"]["cli"]
        replicas = app["deployments"]["VslimReplica"]["replicas"]
        assert app["status"] == "RUNNING" and [r["state"] for r in replicas] == ["RUNNING"]
        assert "vslim-serve pid" in app["deployments"]["VslimReplica"]["deployed_by"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "removing application 'cli'" in err and "stopped" in err
    assert "cli" not in serve.status().applications


def test_direct_ingress_answers_on_each_replicas_own_ports_like_vslim_serve(bundle_fp32, val_clips):
    """--ray-ingress direct on a cluster started for the command (Ray's direct ingress, no proxy hop): the printed
    ports are the replica's own, every protocol answers there as in-process, bad gRPC requests get the protocols'
    errors (Paddle Serving's err_no in trailing metadata too), and SIGTERM removes it all."""
    cmd = [
        *serve_command(),
        "--bundle",
        str(bundle_fp32.server),
        "--ray",
        "local",
        "--ray-ingress",
        "direct",
        "--cpus-per-replica",
        "1",
        "--name",
        "direct",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the replica is up
        assert line.startswith("http="), (line, proc.stderr.read() if proc.poll() is not None else "")
        fields = dict(f.split("=", 1) for f in line.split())
        (url,), (address,) = fields["http"].split(","), fields["grpc"].split(",")
        assert url.startswith("http://") and not url.endswith((":8000", ":9000")) and address != url.split("//")[1]
        replica = types.SimpleNamespace(url=url, address=address)
        assert_answers_like_in_process(bundle_fp32, val_clips, replica)
        test_serving.test_bad_requests_over_grpc(replica, val_clips, bundle_fp32)
        test_v2.test_bad_v2_grpc_requests_get_the_protocol_error(replica, val_clips)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert "direct ingress, no proxy" in err and "stopped" in err, err


def test_ray_options_are_checked_before_touching_a_cluster(cli, bundle_fp32, tmp_path):
    cases = [
        (["--ray", "local", "--autoscale", "3:1"], "is not MIN:MAX"),
        (["--ray", "local", "--port", "9000", "--grpc-port", "9000"], "cannot share a port"),
        (["--ray", "local", "--cpus-per-replica", "0"], "must be > 0"),
        (["--ray", "local", "--name", "a/b"], "without '/'"),
        (["--ray", "local", "--model-control-mode", "poll"], "needs --model-repository"),
    ]
    for extra, message in cases:
        result = cli("serve", "--bundle", str(bundle_fp32.server), *extra)
        assert result.code == 2 and message in result.err, (extra, result.err)
    result = cli("serve", "--bundle", str(tmp_path / "nope"), "--ray", "local")
    assert result.code == 2 and "does not exist" in result.err


# --------------------------------------------------------------------------- one application, disturbed


@pytest.fixture(scope="module")
def fp32_app(cluster, bundle_fp32):
    return deploy(cluster, bundle_fp32.server, replicas=2, max_replicas_per_node=1)


def on_two_nodes() -> list[dict]:
    """The running replicas when there are two on two different nodes, else []."""
    replicas = running()
    return replicas if len(replicas) == 2 and len({r["node_id"] for r in replicas}) == 2 else []


def test_two_replicas_on_two_nodes_answer_like_vslim_serve(fp32_app, bundle_fp32, val_clips):
    assert on_two_nodes(), running()
    assert_answers_like_in_process(bundle_fp32, val_clips)


def test_existing_clients_work_by_changing_only_the_address(fp32_app, bundle_fp32, val_clips, cpp_client, tmp_path):
    """vslim-client, the C++ client and Triton's client library, unmodified, against Ray's proxies."""
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    clips, _, paths = val_clips
    expected = PaddlePredictor(bundle_fp32.server).run(clips[:2])
    for mod, url in ((thttp, TARGET.url.removeprefix("http://")), (tgrpc, TARGET.address)):
        client = mod.InferenceServerClient(url)
        assert client.is_server_ready() and client.is_model_ready("small")
        x = mod.InferInput("data_batch_0", list(clips[:2].shape), "FP32")
        x.set_data_from_numpy(clips[:2])
        got = client.infer("small", [x]).as_numpy("outputs")
        np.testing.assert_allclose(got, expected, atol=1e-4 * np.abs(expected).max(), err_msg=mod.__name__)
    for protocol, address in (("grpc", TARGET.address), ("v2-http", TARGET.url), ("video-file", TARGET.url)):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "vslim.cli.main",
                "client",
                "--bundle",
                str(bundle_fp32.client),
                "--video",
                str(paths[0]),
                "--address",
                address,
                "--protocol",
                protocol,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, (protocol, r.stderr)
        classes = json.loads(r.stdout)["predictions"][0]["classes"]
        if protocol == "grpc":
            first = classes
        assert classes[0] == first[0], protocol
    clip = tmp_path / "clip.npy"
    np.save(clip, clips[0])
    r = subprocess.run(
        [
            str(cpp_client),
            "--host",
            "127.0.0.1",
            "--port",
            str(GRPC_PORT),
            "--client-conf",
            str(bundle_fp32.client),
            "--input",
            str(clip),
            "--topk",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"][0]["classes"][0] == int(expected[0].argmax())


def rays_request_counts(application=APP, protocol="http") -> dict[str, float]:
    """``vslim_requests`` per replica, as every live node's Ray metrics agent exports it (what Prometheus scrapes)."""
    import re
    import urllib.request

    counts: dict[str, float] = {}
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for line in urllib.request.urlopen(url, timeout=30).read().decode().splitlines():
            m = re.match(r"ray_vslim_requests(?:_total)?\{(.*)\} (\S+)$", line)
            if m and f'application="{application}"' in m[1] and f'protocol="{protocol}"' in m[1]:
                replica = re.search(r'replica="([^"]+)"', m[1])[1]
                counts[replica] = counts.get(replica, 0.0) + float(m[2])
    return counts


def test_every_replicas_metrics_reach_rays_metrics_agents(fp32_app, bundle_fp32, val_clips):
    before = sum(rays_request_counts().values())
    with HttpClient(TARGET.url, ClientConfig.load(bundle_fp32.client), mode="json") as c:
        for i in range(12):
            c.predict({"data_batch_0": val_clips[0][i % 6 : i % 6 + 1]})

    def exported():
        counts = rays_request_counts()
        return counts if sum(counts.values()) >= before + 12 else None

    counts = wait_for("Ray's metrics agents to export the requests", exported, timeout=90)
    assert len(counts) == 2, counts  # both replicas answered some, and each is its own series


def test_bad_input_through_ray_gets_the_same_protocol_errors(fp32_app, bundle_fp32, val_clips, tmp_path):
    """The very tests vslim-serve passes, pointed at Ray's proxies (HTTP and gRPC on their two ports)."""
    test_serving.test_bad_requests_get_the_protocol_error_and_the_server_keeps_serving(TARGET, val_clips)
    test_serving.test_bad_requests_over_grpc(TARGET, val_clips, bundle_fp32)
    test_serving.test_bad_video_requests(TARGET, val_clips, tmp_path)
    test_v2.test_bad_v2_http_requests_get_the_protocol_error_and_the_server_keeps_serving(TARGET, val_clips)
    test_v2.test_bad_v2_grpc_requests_get_the_protocol_error(TARGET, val_clips)
    assert len(running()) == 2


def test_replica_loss_is_repaired_with_few_failed_requests(fp32_app, bundle_fp32, val_clips):
    before = running()
    stream = Stream(grpc_client(bundle_fp32), val_clips[0][:1])
    time.sleep(3)
    victim = before[0]
    os.kill(victim["pid"], signal.SIGKILL)
    killed = time.monotonic()
    wait_for(
        "Ray to replace the killed replica",
        lambda: len(now := running()) == 2 and victim["replica_id"] not in {r["replica_id"] for r in now},
    )
    repaired = time.monotonic()
    time.sleep(3)
    stream.stop()
    after_repair = [e for e in stream.errors if e[0] > repaired]
    print(
        f"replica loss: {len(stream.answers)} answers, {len(stream.errors)} failed, "
        f"repaired in {repaired - killed:.1f}s; failures: {[e[1][:80] for e in stream.errors[:3]]}"
    )
    assert not after_repair and len(stream.answers) > 10
    assert len(stream.errors) <= 2 * fp32_app.max_ongoing_requests(), stream.errors


def test_node_loss_keeps_the_survivor_answering_and_recovers(cluster, fp32_app, bundle_fp32, val_clips):
    head_id = cluster.head_node.node_id
    stream = Stream(grpc_client(bundle_fp32), val_clips[0][:1])
    time.sleep(3)
    cluster.remove_node(cluster.worker)
    removed = time.monotonic()
    survivors = wait_for(
        "the worker's replica to be gone", lambda: {r["node_id"] for r in running()} == {head_id}, timeout=120
    )
    settled = time.monotonic()
    time.sleep(5)
    late = [e for e in stream.errors if e[0] > settled]
    answered_alone = [a for a in stream.answers if a[0] > settled]
    print(
        f"node loss: {len(stream.errors)} failed requests; node death seen after {settled - removed:.1f}s; "
        f"survivor answered {len(answered_alone)} in the next 5s"
    )
    assert survivors and not late and answered_alone
    cluster.worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    replicas = wait_for("two replicas on two nodes again", on_two_nodes)
    stream.stop()
    print(
        f"node loss: recovered to {len(replicas)} replicas {time.monotonic() - removed:.1f}s after removal; "
        f"{len(stream.errors)} failed of {len(stream.answers) + len(stream.errors)}"
    )
    assert not [e for e in stream.errors if e[0] > settled]


def test_rolling_update_from_fp32_to_int8_loses_no_request(cluster, fp32_app, bundle_fp32, bundle_int8, val_clips):
    clip = val_clips[0][:1]
    fp32, int8 = (
        PaddlePredictor(bundle_fp32.server).run(clip)[0, 0],
        PaddlePredictor(bundle_int8.server).run(clip)[0, 0],
    )
    assert abs(fp32 - int8) > 1e-3  # the two models can be told apart by this clip's first logit
    stream = Stream(grpc_client(bundle_fp32), clip, threads=3)
    time.sleep(3)
    deploy(cluster, bundle_int8.server, replicas=2, max_replicas_per_node=1)
    time.sleep(3)
    stream.stop()
    models = [
        "fp32" if abs(v - fp32) < 1e-3 else "int8" if abs(v - int8) < 1e-2 else f"? {v}"
        for _, v in sorted(stream.answers)
    ]
    print(
        f"rolling update: {len(models)} answers ({models.count('fp32')} FP32 then {models.count('int8')} INT8), "
        f"{len(stream.errors)} failed"
    )
    assert not stream.errors, stream.errors[:5]
    assert set(models) == {"fp32", "int8"} and models[0] == "fp32" and models[-10:] == ["int8"] * 10
    assert_answers_like_in_process(bundle_int8, val_clips)


def test_autoscaling_follows_load_and_the_token_holds(cluster, bundle_fp32, val_clips, token_file):
    import urllib.request

    deploy(
        cluster,
        bundle_fp32.server,
        autoscale=(1, 2),
        target_ongoing_requests=1,
        upscale_delay_s=1,
        downscale_delay_s=5,
        server={"auth_token_file": str(token_file)},
    )
    wait_for("one replica when idle", lambda: len(running()) == 1)
    token = token_file.read_text().strip()
    conf = ClientConfig.load(bundle_fp32.client)
    clip = val_clips[0][:1]
    assert urllib.request.urlopen(f"{TARGET.url}/v2/health/ready", timeout=30).status == 200
    status, _, _ = test_v2.http("GET", f"{TARGET.url}/v2/models/small")
    assert status == 401
    with GrpcClient(TARGET.address, conf) as c, pytest.raises(Exception, match="UNAUTHENTICATED"):
        c.predict({"data_batch_0": clip})
    stream = Stream(lambda: GrpcClient(TARGET.address, conf, timeout=60, token=token), clip, threads=4)
    grown = wait_for("a second replica under load", lambda: len(running()) == 2, timeout=120)
    stream.stop()
    shrunk = wait_for("back to one replica when idle", lambda: len(running()) == 1, timeout=120)
    print(
        f"autoscaling: 1 -> 2 replicas under 4 concurrent streams, back to 1 idle; "
        f"{len(stream.answers)} answers, {len(stream.errors)} failed"
    )
    assert grown and shrunk and not stream.errors, stream.errors[:3]


# --------------------------------------------------------------------------- configs for serve deploy / KubeRay


def test_ray_config_validates_with_rays_own_schema(cli, bundle_fp32):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    result = cli(
        "serve",
        "--bundle",
        str(bundle_fp32.server),
        "--ray-config",
        "--autoscale",
        "1:4",
        "--cpus-per-replica",
        "2",
        "--max-batch-size",
        "4",
    )
    assert result.code == 0, result.err
    config = yaml.safe_load(result.out)
    schema = ServeDeploySchema.model_validate(config)
    app = schema.applications[0]
    assert app.import_path == "vslim.serving.rayserve.replica:build_app"
    assert app.args["server"]["threads"] == 2 and app.args["server"]["max_batch_size"] == 4
    assert Path(app.args["server"]["bundle"]).is_absolute()
    deployment = config["applications"][0]["deployments"][0]
    assert deployment["autoscaling_config"]["max_replicas"] == 4
    assert deployment["ray_actor_options"]["num_cpus"] == 2
    assert config["grpc_options"]["grpc_servicer_functions"] == [
        "vslim.serving.rayserve.ingress.add_paddle_serving_to_server",
        "vslim.serving.rayserve.ingress.add_v2_to_server",
    ]
    # direct ingress is the cluster's environment, not a Serve config field: the manifest sets it on every
    # node, the Serve config says so; TLS is not carried to the replicas' own ports
    direct = ("--bundle", str(bundle_fp32.server), "--ray-ingress", "direct", "--ray-config")
    result = cli("serve", *direct, "rayservice")
    assert result.code == 0, result.err
    spec = yaml.safe_load(result.out)["spec"]["rayClusterConfig"]
    for pod in (spec["headGroupSpec"], *spec["workerGroupSpecs"]):
        assert {"name": "RAY_SERVE_ENABLE_DIRECT_INGRESS", "value": "1"} in pod["template"]["spec"]["containers"][0][
            "env"
        ]
    result = cli("serve", *direct)
    assert result.code == 0 and result.out.startswith("# direct ingress: start every node"), result.err
    ServeDeploySchema.model_validate(yaml.safe_load(result.out))
    cert = bundle_fp32.server / "model.pdmodel"  # any existing file: refused before it is read
    result = cli("serve", *direct[:4], "--ray", "local", "--tls-cert", str(cert), "--tls-key", str(cert))
    assert result.code == 2 and "plaintext" in result.err, result.err


def test_a_broken_predictor_fails_the_health_check_and_ray_replaces_it(cluster, bundle_fp32, val_clips, monkeypatch):
    from vslim.serving.errors import ServingError

    monkeypatch.setenv("VSLIM_INJECT_FAULTS", "inference_error_every=1")  # forwarded to the replicas: all runs fail
    deploy(cluster, bundle_fp32.server, replicas=1)
    first = wait_for("one replica", lambda: len(r := running()) == 1 and r)[0]["replica_id"]
    with GrpcClient(TARGET.address, ClientConfig.load(bundle_fp32.client)) as c:
        for _ in range(3):
            with pytest.raises(ServingError, match="injected fault"):
                c.predict({"data_batch_0": val_clips[0][:1]})
    wait_for(
        "Ray to replace the unhealthy replica", lambda: first not in {r["replica_id"] for r in running()}, timeout=120
    )


def test_one_process_serving_the_client_and_the_demo_do_not_import_ray():
    code = (
        "import sys, vslim.demo, vslim.cli.main, vslim.cli.serving_cmd, vslim.serving.server, "
        "vslim.serving.client, vslim.benchmarks.serving_load; print(sorted(m for m in sys.modules "
        "if m == 'ray' or m.startswith('ray.')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)
