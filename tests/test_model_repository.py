"""Many models in one server: a model repository (Triton's layout and vslim bundles), versions, load and unload
while serving, against real servers on 127.0.0.1 with tritonclient as the oracle of the protocol."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from servers import ServerProcess

from vslim.serving.process import serve_command

SERVER = pytest.mark.server  # both Pythons: the server's own paths (asyncio's shutdown differs between them)

BATCHING = (
    "max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 3000 }\n"
    "instance_group [ { count: 1 kind: KIND_CPU } ]\n"
)


def _copy_bundle(bundle, dest: Path) -> Path:
    """A vslim-package output folder (server half, client half, manifest) copied to ``dest``."""
    shutil.copytree(bundle.root, dest)
    return dest


def _post(url: str, body: bytes = b"", token: str | None = None) -> tuple[int, dict | list]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def clip(val_clips):
    return np.ascontiguousarray(val_clips[0][:1])


@pytest.fixture(scope="module")
def repository(bundle_fp32, bundle_int8, tmp_path_factory) -> Path:
    """``pptsm`` in Triton's layout (version 1 the FP32 bundle, 2 the INT8 one, a config.pbtxt with dynamic
    batching), and two vslim bundles as vslim-package wrote them: ``small`` and ``small_int8``."""
    root = tmp_path_factory.mktemp("repository")
    _copy_bundle(bundle_fp32, root / "pptsm" / "1")
    _copy_bundle(bundle_int8, root / "pptsm" / "2")
    (root / "pptsm" / "config.pbtxt").write_text(BATCHING)
    _copy_bundle(bundle_fp32, root / "fp32-out")
    shutil.copytree(bundle_int8.server, root / bundle_int8.server.name)  # a bare server half
    return root


@SERVER
def test_a_repository_serves_every_model_by_name_and_version(repository, clip, cli, bundle_fp32, val_clips):
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    from vslim.serving.client import GrpcClient
    from vslim.serving.protocols.v2.client import V2GrpcClient, V2HttpClient

    with ServerProcess(
        None, "--model-repository", repository, "--version-policy", "all", "--default-model", "small"
    ) as server:
        log = server.log()
        assert "3 model(s)" in log and "model pptsm version 2" in log and "batching up to 4" in log, log
        http = thttp.InferenceServerClient(server.address)
        index = http.get_model_repository_index()
        assert {(m["name"], m["version"], m["state"]) for m in index} == {
            ("pptsm", "1", "READY"),
            ("pptsm", "2", "READY"),
            ("small", "1", "READY"),
            ("small_int8", "1", "READY"),
        }
        assert http.get_model_metadata("pptsm")["versions"] == ["1", "2"]
        assert http.is_model_ready("pptsm", "1") and http.is_model_ready("small_int8_video")
        config = http.get_model_config("pptsm", "2")
        assert config["max_batch_size"] == 64 and config["dynamic_batching"]["preferred_batch_size"] == [4]

        def answer(model, version=""):
            with V2HttpClient(server.address, model=model, version=version) as c:
                return c.infer(model, {"data_batch_0": clip})["outputs"]

        fp32, int8 = answer("small"), answer("small_int8")
        assert not np.array_equal(fp32, int8)  # two different models, so versions are told apart below
        np.testing.assert_array_equal(answer("pptsm", "1"), fp32)
        np.testing.assert_array_equal(answer("pptsm", "2"), int8)
        np.testing.assert_array_equal(answer("pptsm"), int8)  # no version: the newest
        with V2GrpcClient(server.address, model="pptsm", version="1") as c:
            np.testing.assert_array_equal(c.infer("pptsm", {"data_batch_0": clip})["outputs"], fp32)
        with GrpcClient(server.address) as c:  # Paddle Serving's protocol names no model: --default-model
            np.testing.assert_array_equal(c.predict({"data_batch_0": clip})["outputs"], fp32)

        # statistics per model and version; metrics labelled by model
        stats = http.get_inference_statistics("pptsm", "1")["model_stats"]
        assert [(s["name"], s["version"], s["inference_count"]) for s in stats] == [("pptsm", "1", 2)]
        assert {s["version"] for s in http.get_inference_statistics("pptsm")["model_stats"]} == {"1", "2"}
        with urllib.request.urlopen(f"{server.url}/metrics") as r:
            text = r.read().decode()
        for model in ("pptsm", "small", "small_int8"):
            assert f'vslim_requests_total{{endpoint="infer",model="{model}",outcome="ok",protocol="v2-http"}}' in text
        assert 'vslim_requests_total{endpoint="inference",model="small",outcome="ok",protocol="grpc"}' in text

        # unknown models and versions: 404 / NOT_FOUND
        assert _get(f"{server.url}/v2/models/nope")[0] == 404
        status, body = _get(f"{server.url}/v2/models/pptsm/versions/3")
        assert status == 404 and "version 3" in body["error"] and "1, 2" in body["error"]
        g = tgrpc.InferenceServerClient(server.address)
        for name, version in (("nope", ""), ("pptsm", "7"), ("small_video", "2")):
            with pytest.raises(tgrpc.InferenceServerException) as info:
                g.get_model_metadata(name, version)
            assert "StatusCode.NOT_FOUND" in str(info.value.status()), (name, version)
        # the none control mode refuses load and unload, in both transports
        status, body = _post(f"{server.url}/v2/repository/models/small/unload")
        assert status == 400 and "--model-control-mode explicit" in body["error"]
        with pytest.raises(tgrpc.InferenceServerException, match="explicit"):
            g.load_model("small")
        g.close()
        http.close()

        # the CLI: --status lists models and versions; the client picks model and version
        r = cli("serve", "--status", "--port", server.port)
        assert r.code == 0, r.err
        status = json.loads(r.out)
        assert status["ready"] and len(status["models"]) == 4
        video = val_clips[2][0]
        answers = {}
        for version in ("1", "2"):
            r = cli(
                "client",
                "--bundle",
                bundle_fp32.client,
                "--video",
                video,
                "--address",
                server.address,
                "--protocol",
                "v2-grpc",
                "--model",
                "pptsm",
                "--model-version",
                version,
                "--json",
                "--top-k",
                3,
            )
            assert r.code == 0, r.err
            answers[version] = json.loads(r.out)["predictions"][0]["scores"]
        assert answers["1"] != answers["2"]  # FP32 and INT8 answered
        r = cli(
            "client", "--bundle", bundle_fp32.client, "--video", video, "--address", server.address, "--model", "pptsm"
        )
        assert r.code == 2 and "--model applies to --protocol v2-http and v2-grpc" in r.err, r.err
    assert server.proc.returncode == 0, server.log()


def _steady_load(address: str, model: str, clip, stop: threading.Event, results: list) -> None:
    from vslim.serving.protocols.v2.client import V2HttpClient

    with V2HttpClient(address, model=model, timeout=120) as c:
        while not stop.is_set():
            try:
                results.append(float(c.infer(model, {"data_batch_0": clip})["outputs"][0, 0]))
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                results.append(f"{type(exc).__name__}: {exc}")


@SERVER
def test_load_and_unload_while_serving(repository, bundle_fp32, bundle_int8, clip, tmp_path):
    """Under a steady load on A: load C, unload B (its admitted requests finish), reload A with a new version;
    A never fails; a damaged bundle's load is refused and nothing else changes; SIGTERM drains every model."""
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    from vslim.serving.protocols.v2.client import V2HttpClient

    root = tmp_path / "repo"
    _copy_bundle(bundle_fp32, root / "a" / "1")
    _copy_bundle(bundle_fp32, root / "b" / "1")
    _copy_bundle(bundle_int8, root / "c" / "1")
    damaged = _copy_bundle(bundle_fp32, root / "damaged" / "1")
    params = next(damaged.glob("*_serving_server/*.pdiparams"))
    params.write_bytes(params.read_bytes()[:-8] + b"\0" * 8)
    # every inference run takes 150 ms more: requests are in flight long enough to watch them
    with ServerProcess(
        None,
        "--model-repository",
        root,
        "--model-control-mode",
        "explicit",
        "--load-model",
        "a",
        "--load-model",
        "b",
        "--default-model",
        "a",
        "--workers",
        2,
        env={"VSLIM_INJECT_FAULTS": "inference_delay_ms=150"},
    ) as server:
        http = thttp.InferenceServerClient(server.address, connection_timeout=120, network_timeout=120)
        assert {m["name"]: m.get("state") for m in http.get_model_repository_index()} == {
            "a": "READY",
            "b": "READY",
            "c": "UNAVAILABLE",
            "damaged": "UNAVAILABLE",
        }
        stop, results = threading.Event(), []
        loads = [
            threading.Thread(target=_steady_load, args=(server.address, "a", clip, stop, results)) for _ in range(2)
        ]
        for load in loads:
            load.start()
        try:
            # C: not loaded, then loaded, then answers
            assert _post(f"{server.url}/v2/models/c/infer", b"{}")[0] == 404
            http.load_model("c")
            assert http.is_model_ready("c")
            with V2HttpClient(server.address, model="c") as c:
                assert c.infer("c", {"data_batch_0": clip})["outputs"].shape == (1, 10)

            # B: requests admitted before the unload finish; after it B is gone
            b_results = []

            def one_b():
                with V2HttpClient(server.address, model="b", timeout=120) as c:
                    try:
                        b_results.append(c.infer("b", {"data_batch_0": clip})["outputs"].shape)
                    except Exception as exc:  # noqa: BLE001
                        b_results.append(str(exc))

            b_threads = [threading.Thread(target=one_b) for _ in range(3)]
            for t in b_threads:
                t.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                stats = http.get_inference_statistics("b")["model_stats"][0]
                if stats["inference_stats"]["queue"]["count"] >= 1:  # one is running, the others queued
                    break
                time.sleep(0.01)
            t0 = time.monotonic()
            http.unload_model("b")
            unload_seconds = time.monotonic() - t0
            for t in b_threads:
                t.join(60)
            assert b_results == [(1, 10)] * 3, b_results
            assert not http.is_model_ready("b")
            assert _post(f"{server.url}/v2/models/b/infer", b"{}")[0] == 404

            # A: a new version appears; the reload serves it and retires version 1, A answering throughout
            _copy_bundle(bundle_int8, root / "a" / "2")
            http.load_model("a")
            assert http.get_model_metadata("a")["versions"] == ["2"]

            # a damaged bundle is refused with its reason; what is served does not change
            before = http.get_model_repository_index()
            with pytest.raises(thttp.InferenceServerException, match="changed since packaging"):
                http.load_model("damaged")
            after = {m["name"]: m for m in http.get_model_repository_index()}
            assert after["damaged"]["state"] == "UNAVAILABLE" and "sha256" in after["damaged"]["reason"]
            assert {m["name"]: m.get("state") for m in before} == {n: m.get("state") for n, m in after.items()}
            # names that are paths, and models not in the repository
            g = tgrpc.InferenceServerClient(server.address)
            for name in ("../b", "/etc", ".."):
                with pytest.raises(tgrpc.InferenceServerException, match="not a path"):
                    g.load_model(name)
            with pytest.raises(tgrpc.InferenceServerException, match="no model 'zzz'"):
                g.load_model("zzz")
            g.close()
            time.sleep(0.5)
        finally:
            stop.set()
            for load in loads:
                load.join(120)
        http.close()
        failures = [r for r in results if isinstance(r, str)]
        assert len(results) >= 10 and not failures, failures[:5]
        assert len(set(results)) == 2, set(results)  # A answered as version 1 (FP32), then as version 2 (INT8)
        server.terminate()
        assert server.stop() == 0, server.log()
    log = server.log()
    assert "unloading b version 1" in log and "unloading a version 1" in log and "stopped" in log, log
    print(
        f"figure: {len(results)} requests on A across load C, unload B, reload A (v1 -> v2): 0 failed; "
        f"unloading B with 3 admitted requests took {unload_seconds:.2f}s"
    )


@pytest.mark.slow  # Python 3.11's `make test` only: the 3.12 tier runs the two servers above
def test_poll_mode_follows_the_folder(bundle_fp32, tmp_path, clip):
    root = tmp_path / "repo"
    _copy_bundle(bundle_fp32, root / "first" / "1")
    with ServerProcess(
        None, "--model-repository", root, "--model-control-mode", "poll", "--repository-poll-secs", 0.3
    ) as server:
        _copy_bundle(bundle_fp32, root / "second" / "1")
        deadline = time.monotonic() + 60
        while _get(f"{server.url}/v2/models/second/ready")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _get(f"{server.url}/v2/models/second/ready") == (200, {"name": "second", "ready": True})
        shutil.rmtree(root / "first")
        while _get(f"{server.url}/v2/models/first/ready")[0] != 404 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _get(f"{server.url}/v2/models/first/ready")[0] == 404
        status, body = _post(f"{server.url}/v2/repository/models/first/load")
        assert status == 400 and "poll" in body["error"]
    assert server.proc.returncode == 0


def _refused(*argv, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*serve_command(), "--port", "0", *map(str, argv)], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_repository_mistakes_are_refused_at_start(bundle_fp32, bundle_int8, tmp_path):
    root = tmp_path / "two-of-a-name"
    _copy_bundle(bundle_fp32, root / "small" / "1")
    _copy_bundle(bundle_fp32, root / "out")  # also a model named "small"
    r = _refused("--model-repository", root)
    assert r.returncode != 0 and "two models are named 'small'" in r.stderr, r.stderr

    root = tmp_path / "two"
    _copy_bundle(bundle_fp32, root / "a" / "1")
    _copy_bundle(bundle_int8, root / "b" / "1")
    r = _refused("--model-repository", root)
    assert r.returncode != 0 and "--default-model" in r.stderr and "a, b" in r.stderr, r.stderr
    r = _refused("--model-repository", root, "--default-model", "zz")
    assert r.returncode != 0 and "--default-model 'zz' is not a model" in r.stderr, r.stderr
    r = _refused("--model-repository", root, "--default-model", "a", "--version-policy", "newest")
    assert r.returncode != 0 and "--version-policy 'newest'" in r.stderr, r.stderr
    r = _refused("--model-repository", root, "--bundle", bundle_fp32.server)
    assert r.returncode != 0 and "not both" in r.stderr, r.stderr
    r = _refused(
        "--model-repository", root, "--default-model", "a", "--model-control-mode", "explicit", "--load-model", "zz"
    )
    assert r.returncode != 0 and "--load-model zz: not in" in r.stderr, r.stderr
    (root / "a" / "config.pbtxt").write_text("max_batch_size: [not a number")
    r = _refused("--model-repository", root, "--default-model", "a")
    assert r.returncode != 0 and "config.pbtxt is not a model configuration" in r.stderr, r.stderr


def test_version_policies():
    from vslim.errors import ConfigError
    from vslim.serving.repository import VersionPolicy

    assert VersionPolicy.parse("latest:2").select([3, 1, 2]) == [2, 3]
    assert VersionPolicy.parse("latest").select([1, 5]) == [5]
    assert VersionPolicy.parse("all").select([2, 1]) == [1, 2]
    assert VersionPolicy.parse("specific:1,3").select([1, 2, 3]) == [1, 3]
    for bad in ("latest:0", "specific:", "specific:0", "all:2", "newest", "latest:x"):
        with pytest.raises(ConfigError):
            VersionPolicy.parse(bad)


class _FakeService:
    """What the repository reads of a model service (the engine is not what these tests claim)."""

    def __init__(self, name, version):
        self.name, self.version = name, str(version)
        self.engine, self.draining, self.unloading, self.active = None, False, False, 0
        self.metrics = type("M", (), {"ready": type("G", (), {"set": lambda self, v: None})()})()

    @property
    def ready(self):
        return not (self.draining or self.unloading)


def test_a_loading_model_answers_unavailable_and_a_failed_reload_keeps_the_served_version(bundle_fp32, tmp_path):
    """The repository's states, with a slow and a failing opener standing in for bundle loading."""
    import asyncio

    from vslim.serving.config import ServerConfig
    from vslim.serving.errors import NOT_FOUND, UNAVAILABLE, RequestError
    from vslim.serving.repository import ModelRepository

    root = tmp_path / "repo"
    _copy_bundle(bundle_fp32, root / "m" / "1")
    gate, fail = threading.Event(), {"on": False}

    def opener(cfg, source, metrics):
        gate.wait(30)
        if fail["on"]:
            raise RuntimeError("the bundle is damaged")
        return _FakeService(source.name, source.version)

    async def scenario():
        repo = ModelRepository(ServerConfig(model_repository=str(root), model_control_mode="explicit"), opener)
        await repo.start([])
        with pytest.raises(RequestError) as info:
            repo.get("m")
        assert info.value.kind == NOT_FOUND
        loading = asyncio.create_task(repo.load("m"))
        await asyncio.sleep(0.05)
        with pytest.raises(RequestError) as info:
            repo.get("m")
        assert info.value.kind == UNAVAILABLE and "loading" in str(info.value)
        assert [(r["name"], r["state"]) for r in repo.index()] == [("m", "LOADING")]
        gate.set()
        await loading
        assert repo.get("m").version == "1" and repo.index(ready_only=True)[0]["state"] == "READY"
        # a new version that fails to load: version 1 keeps serving, the index says why
        _copy_bundle(bundle_fp32, root / "m" / "2")
        fail["on"] = True
        with pytest.raises(RequestError, match="damaged"):
            await repo.load("m")
        assert repo.get("m").version == "1" and repo.versions("m") == ["1"]
        rows = {r["version"]: r for r in repo.index()}
        assert (
            rows["1"]["state"] == "READY" and rows["2"]["state"] == "UNAVAILABLE" and "damaged" in rows["2"]["reason"]
        )
        # an admitted request holds the unload until it is answered
        service = repo.get("m")
        service.active = 1
        unloading = asyncio.create_task(repo.unload("m"))
        await asyncio.sleep(0.1)
        assert not unloading.done() and service.unloading and not service.ready  # admits nothing new
        assert [(r["version"], r["state"]) for r in repo.index() if r["version"] == "1"] == [("1", "UNLOADING")]
        service.active = 0
        await unloading
        with pytest.raises(RequestError) as info:
            repo.get("m")
        assert info.value.kind == NOT_FOUND

    asyncio.run(scenario())
