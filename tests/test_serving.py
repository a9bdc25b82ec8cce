"""Serving end to end: bundles, a real server process on 127.0.0.1, every protocol, bad input, batching, SIGTERM."""

import base64
import gzip
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from google.protobuf import text_format
from servers import ServerProcess, start_failure

from vslim.accuracy import softmax
from vslim.data import ClipPipeline
from vslim.data.decode import VideoReader
from vslim.inference import PaddlePredictor
from vslim.serving.bundle import sha256_of
from vslim.serving.client import ClientConfig, GrpcClient, HttpClient, VideoEndpointClient, classify_video
from vslim.serving.errors import ServingError
from vslim.serving.protocols.paddle_serving.types import config_pb2
from vslim.serving.protocols.v2.client import V2GrpcClient, V2HttpClient

pytestmark = [pytest.mark.slow, pytest.mark.server]


def http_post(url, body: bytes, content_type="application/json", headers=None):
    """A raw HTTP POST (stdlib only): (status, headers, body)."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def good_request(clip) -> bytes:
    return json.dumps(
        {
            "tensor": [
                {
                    "float_data": clip.reshape(-1).tolist(),
                    "elem_type": 1,
                    "name": "data_batch_0",
                    "alias_name": "data_batch_0",
                    "shape": [1, *clip.shape],
                }
            ],
            "fetch_var_names": ["outputs"],
            "log_id": 1,
        }
    ).encode()


# --------------------------------------------------------------------------- bundles


@pytest.mark.parametrize("which, precision", [("bundle_fp32", "fp32"), ("bundle_int8", "int8")])
def test_bundle_matches_paddle_serving_layout(request, which, precision):
    b = request.getfixturevalue(which)
    for folder, conf_name in ((b.server, "serving_server_conf"), (b.client, "serving_client_conf")):
        conf = config_pb2.GeneralModelConfig()
        text_format.Parse((folder / f"{conf_name}.prototxt").read_text(), conf)
        stream = config_pb2.GeneralModelConfig()
        stream.ParseFromString((folder / f"{conf_name}.stream.prototxt").read_bytes())
        assert conf == stream
        (feed,), (fetch,) = conf.feed_var, conf.fetch_var
        assert (feed.name, feed.alias_name, feed.is_lod_tensor, feed.feed_type) == (
            "data_batch_0",
            "data_batch_0",
            False,
            1,
        )
        assert list(feed.shape) == [8, 3, 64, 64]
        assert fetch.alias_name == "outputs" and fetch.fetch_type == 1 and list(fetch.shape) == [10]
        assert fetch.name.endswith(".tmp_0") or fetch.name.endswith(".tmp_1")
    assert (b.server / "model.pdmodel").is_file() and (b.server / "model.pdiparams").is_file()
    manifest = json.loads(b.manifest.read_text())
    assert manifest["precision"] == precision and manifest["labels"][0] == "move_right"
    assert manifest["preprocess"]["target_size"] == 64
    for rel, entry in manifest["files"].items():
        assert sha256_of(b.root / rel) == entry["sha256"]
    assert "small" in manifest["name"] and f"{manifest['name']}_serving_server/model.pdiparams" in manifest["files"]


# --------------------------------------------------------------------------- protocols


@pytest.mark.parametrize("server_name, bundle_name", [("server_fp32", "bundle_fp32"), ("server_int8", "bundle_int8")])
def test_every_protocol_gives_the_in_process_answer(request, server_name, bundle_name, val_clips):
    server, bundle = request.getfixturevalue(server_name), request.getfixturevalue(bundle_name)
    clips, _, paths = val_clips
    expected = PaddlePredictor(bundle.server).run(clips)
    scale = np.abs(expected).max()
    conf = ClientConfig.load(bundle.client)
    clients = [
        GrpcClient(server.address, conf),
        HttpClient(server.address, conf, mode="json"),
        HttpClient(server.address, conf, mode="proto"),
        HttpClient(server.address, conf, mode="proto", gzip_body=True),
    ]
    for client in clients:
        with client:
            for i in (0, 3):
                out = client.predict({"data_batch_0": clips[i : i + 1]}, ["outputs"])["outputs"]
                np.testing.assert_allclose(out, expected[i : i + 1], atol=1e-4 * scale, err_msg=client.protocol)
            batch = client.predict({"data_batch_0": clips[:4]})["outputs"]
            np.testing.assert_allclose(batch, expected[:4], atol=1e-4 * scale)
    # the video endpoints preprocess on the server: compare with the same preprocessing in-process
    predictor = PaddlePredictor(bundle.server)
    pipeline = ClipPipeline(conf.meta.preprocess)
    video = VideoEndpointClient(server.address)
    for path in paths[:2]:
        with VideoReader(path) as reader:
            frames = reader.read(range(reader.num_frames))
        probs = softmax(predictor.run(pipeline.from_frames(frames)[None]))[0]
        answer = video.predict_frames(frames)
        assert answer["err_no"] == 0 and answer["key"] == ["label", "prob"]
        label, prob = eval(answer["value"][0]), eval(answer["value"][1])  # the strings PaddleVideo returns
        assert label == [conf.meta.labels[int(probs.argmax())]]
        assert abs(prob[0] - float(probs.max())) < 1e-4
        top = video.classify_file(path, top_k=3)
        file_probs = softmax(predictor.run(pipeline.from_video(path)[None]))[0]
        assert top.classes[0] == int(file_probs.argmax()) and abs(top.scores[0] - file_probs.max()) < 1e-4
        with GrpcClient(server.address, conf) as c:
            assert classify_video(c, path, 3).classes == top.classes


def test_the_wire_format_is_the_contract(server_int8, bundle_int8, val_clips, tmp_path):
    """A client built from the .proto alone (a fresh interpreter, no vslim code) and raw JSON both work."""
    from conftest import REPO

    clips = val_clips[0]
    expected = PaddlePredictor(bundle_int8.server).run(clips[:1])
    np.save(tmp_path / "clip.npy", clips[:1])
    script = tmp_path / "raw_client.py"
    script.write_text(f"""
import sys, json, numpy as np, grpc
from grpc_tools import protoc
out = {str(tmp_path)!r}
assert protoc.main(["protoc", "-I{REPO / "serving" / "proto"}", "--python_out=" + out,
                    "general_model_service.proto"]) == 0
sys.path.insert(0, out)
import general_model_service_pb2 as pb
clip = np.load(out + "/clip.npy")
req = pb.Request(fetch_var_names=["outputs"], log_id=9)
t = req.tensor.add(name="data_batch_0", alias_name="data_batch_0", elem_type=1, shape=list(clip.shape))
t.float_data.extend(clip.reshape(-1).tolist())
channel = grpc.insecure_channel("{server_int8.address}")
call = channel.unary_unary("/baidu.paddle_serving.predictor.general_model.GeneralModelService/inference",
                           request_serializer=pb.Request.SerializeToString,
                           response_deserializer=pb.Response.FromString)
resp = call(req, timeout=60)
t = resp.outputs[0].tensor[0]
print(json.dumps({{"alias": t.alias_name, "shape": list(t.shape), "values": list(t.float_data),
                   "log_id": resp.log_id, "err_no": resp.err_no}}))
""")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = json.loads(proc.stdout)
    assert raw["alias"] == "outputs" and raw["shape"] == [1, 10] and raw["log_id"] == 9 and raw["err_no"] == 0
    np.testing.assert_allclose(raw["values"], expected[0], atol=1e-4 * np.abs(expected).max())
    # curl-style JSON, as Paddle Serving's docs show it
    status, headers, body = http_post(f"{server_int8.url}/GeneralModelService/inference", good_request(clips[0]))
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["err_no"] == 0 and answer["err_msg"] == "" and answer["log_id"] == 1
    tensor = answer["outputs"][0]["tensor"][0]
    assert tensor["alias_name"] == "outputs" and tensor["elem_type"] == 1 and tensor["shape"] == [1, 10]
    np.testing.assert_allclose(tensor["float_data"], expected[0], atol=1e-4 * np.abs(expected).max())
    # proto3 JSON also accepts lowerCamelCase names and int64 as strings
    camel = json.dumps(
        {
            "tensor": [
                {
                    "floatData": clips[0].reshape(-1).tolist(),
                    "elemType": 1,
                    "aliasName": "data_batch_0",
                    "shape": [1, 8, 3, 64, 64],
                }
            ],
            "fetchVarNames": ["outputs"],
            "logId": "5",
        }
    ).encode()
    status, _, body = http_post(f"{server_int8.url}/GeneralModelService/inference", camel)
    assert status == 200 and json.loads(body)["log_id"] == 5


def test_health_metrics_model_info_and_openapi(server_int8):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with urllib.request.urlopen(f"{server_int8.url}/health") as r:
        assert r.status == 200 and json.load(r)["status"] == "ready"
    with grpc.insecure_channel(server_int8.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in (
            "",
            "baidu.paddle_serving.predictor.general_model.GeneralModelService",
            "inference.GRPCInferenceService",
        ):
            assert (
                stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
                == health_pb2.HealthCheckResponse.SERVING
            )
    with urllib.request.urlopen(f"{server_int8.url}/model") as r:
        info = json.load(r)
    assert info["precision"] == "int8" and info["inputs"][0]["shape"] == [-1, 8, 3, 64, 64]
    assert info["verified_manifest"] is True and len(info["labels"]) == 10
    with urllib.request.urlopen(f"{server_int8.url}/openapi.json") as r:
        paths = json.load(r)["paths"]
    assert {
        "/GeneralModelService/inference",
        "/video/prediction",
        "/video/classify",
        "/health",
        "/v2",
        "/v2/health/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/models/{name}/config",
        "/v2/models/{name}/stats",
    } <= set(paths)
    assert info["protocols"] == ["paddle_serving", "v2"]
    with urllib.request.urlopen(f"{server_int8.url}/metrics") as r:
        text = r.read().decode()
    for metric in (
        "vslim_requests_total",
        "vslim_request_latency_seconds_bucket",
        "vslim_batch_size_bucket",
        "vslim_queue_depth",
        "vslim_request_errors_total",
        'vslim_ready{model="small_int8"} 1.0',
    ):
        assert metric in text


# --------------------------------------------------------------------------- batching


def test_dynamic_batching_answers_each_request_with_its_own_result(bundle_fp32, val_clips):
    clips = val_clips[0]
    rng = np.random.default_rng(0)
    inputs = [clips[i % len(clips)] + 0.05 * rng.standard_normal(clips[0].shape).astype(np.float32) for i in range(32)]
    expected = PaddlePredictor(bundle_fp32.server).run(np.stack(inputs))
    server = ServerProcess(bundle_fp32.server, "--max-batch-size", 8, "--batch-timeout-ms", 50, "--workers", 1)
    try:
        conf = ClientConfig.load(bundle_fp32.client)
        with GrpcClient(server.address, conf) as grpc_client, HttpClient(server.address, conf, mode="proto") as http:

            def one(i):
                client = grpc_client if i % 2 else http
                return client.predict({"data_batch_0": inputs[i][None]})["outputs"][0]

            with ThreadPoolExecutor(32) as pool:
                results = list(pool.map(one, range(32)))
        for i, got in enumerate(results):
            np.testing.assert_allclose(got, expected[i], atol=1e-4 * np.abs(expected).max(), err_msg=f"request {i}")
        with urllib.request.urlopen(f"{server.url}/metrics") as r:
            text = r.read().decode()
        singles = float(re.search(r'vslim_batch_size_bucket\{le="1.0",model="small"\} (\S+)', text).group(1))
        runs = float(re.search(r'vslim_batch_size_count\{model="small"\} (\S+)', text).group(1))
        items = float(re.search(r'vslim_batch_size_sum\{model="small"\} (\S+)', text).group(1))
        assert items == 32 and runs < 32 and runs > singles, text
    finally:
        assert server.stop() == 0, server.log()


# --------------------------------------------------------------------------- bad input


def _bad_cases(clip):
    flat = clip.reshape(-1).tolist()

    def req(**tensor):
        base = {
            "float_data": flat,
            "elem_type": 1,
            "name": "data_batch_0",
            "alias_name": "data_batch_0",
            "shape": [1, 8, 3, 64, 64],
        }
        base.update(tensor)
        return json.dumps(
            {"tensor": [{k: v for k, v in base.items() if v is not None}], "fetch_var_names": ["outputs"]}
        ).encode()

    return [
        ("unknown feed", req(name="pixels", alias_name="pixels"), "application/json", {}, 400, "unknown feed 'pixels'"),
        (
            "unknown fetch",
            json.dumps({"tensor": json.loads(req())["tensor"], "fetch_var_names": ["logits"]}).encode(),
            "application/json",
            {},
            400,
            "unknown fetch 'logits'",
        ),
        (
            "wrong dtype",
            req(float_data=None, int64_data=[1] * len(flat), elem_type=0),
            "application/json",
            {},
            400,
            "must be float32 (elem_type 1), got int64",
        ),
        ("wrong count", req(float_data=flat[:-5]), "application/json", {}, 400, "values but shape"),
        ("wrong shape", req(shape=[1, 4, 3, 64, 128]), "application/json", {}, 400, "but the model expects"),
        ("negative shape", req(shape=[1, -8, 3, 64, 64]), "application/json", {}, 400, "non-positive dimension"),
        ("absurd shape", req(shape=[100000, 8, 3, 64, 64]), "application/json", {}, 413, "over this server.s limit"),
        (
            "empty request",
            b'{"tensor": [], "fetch_var_names": ["outputs"]}',
            "application/json",
            {},
            400,
            "empty request",
        ),
        ("no tensors", b'{"fetch_var_names": ["outputs"]}', "application/json", {}, 400, "empty request"),
        ("missing data", req(float_data=None), "application/json", {}, 400, r"has 0 values but shape"),
        ("malformed JSON", b'{"tensor": [{"float_data": [1, 2,', "application/json", {}, 400, "malformed JSON"),
        ("unknown JSON field", b'{"tensors": []}', "application/json", {}, 400, "unknown field 'tensors'"),
        ("malformed protobuf", b"\xff\xff\xff\xff garbage", "application/proto", {}, 400, "malformed protobuf"),
        ("unsupported type", b"hello", "text/plain", {}, 415, "Content-Type 'text/plain' is not supported"),
        (
            "unknown encoding",
            good_request(clip),
            "application/json",
            {"Content-Encoding": "br"},
            415,
            "Content-Encoding 'br' is not supported",
        ),
        ("over the size limit", b"[" + b"0," * (9 << 20) + b"0]", "application/json", {}, 413, "exceeds the 16 MiB"),
        (
            "gzip bomb",
            gzip.compress(b" " * (40 << 20)),
            "application/json",
            {"Content-Encoding": "gzip"},
            413,
            "decompressed body exceeds",
        ),
        (
            "broken gzip",
            b"\x1f\x8b\x08\x00garbage",
            "application/json",
            {"Content-Encoding": "gzip"},
            400,
            "not valid gzip|gzip body is truncated",
        ),
    ]


def test_bad_requests_get_the_protocol_error_and_the_server_keeps_serving(server_fp32, val_clips):
    clip = val_clips[0][0]
    url = f"{server_fp32.url}/GeneralModelService/inference"
    for name, body, ctype, headers, status, message in _bad_cases(clip):
        got, hdrs, answer = http_post(url, body, ctype, headers)
        assert got == status, (name, got, answer[:300])
        if ctype == "application/proto":
            from vslim.serving.protocols.paddle_serving.types import service_pb2

            resp = service_pb2.Response.FromString(answer)
            err_no, err_msg = resp.err_no, resp.err_msg
        else:
            err = json.loads(answer)
            err_no, err_msg = err["err_no"], err["err_msg"]
        assert err_no == 5000 and (message in err_msg or re.search(message, err_msg)), (name, err_msg)
        ok, _, good = http_post(url, good_request(clip))
        assert ok == 200 and json.loads(good)["err_no"] == 0, name


def test_bad_requests_over_grpc(server_fp32, val_clips, bundle_fp32):
    import grpc

    from vslim.serving.protocols.paddle_serving.types import service_grpc, service_pb2

    clip = val_clips[0][:1]
    with grpc.insecure_channel(server_fp32.address) as channel:
        stub = service_grpc.GeneralModelServiceStub(channel)

        def call(**tensor):
            req = service_pb2.Request(fetch_var_names=tensor.pop("fetch", ["outputs"]))
            t = req.tensor.add(
                name=tensor.pop("name", "data_batch_0"),
                elem_type=tensor.pop("elem_type", 1),
                shape=tensor.pop("shape", list(clip.shape)),
            )
            t.float_data.extend(tensor.pop("values", clip.reshape(-1).tolist()))
            return stub.inference(req, timeout=60)

        cases = [
            ({"name": "pixels"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown feed"),
            ({"fetch": ["nope"]}, grpc.StatusCode.INVALID_ARGUMENT, "unknown fetch"),
            ({"shape": [1, 8, 3, 64, 65]}, grpc.StatusCode.INVALID_ARGUMENT, "the model expects"),
            ({"values": [0.0] * 10}, grpc.StatusCode.INVALID_ARGUMENT, "values but shape"),
            ({"shape": [1000, 8, 3, 64, 64]}, grpc.StatusCode.RESOURCE_EXHAUSTED, "over this server's limit"),
            ({"values": [0.0] * (5 << 20), "shape": [5 << 20]}, grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
        ]
        for tensor, code, message in cases:
            with pytest.raises(grpc.RpcError) as info:
                call(**tensor)
            assert info.value.code() == code and message in info.value.details(), info.value.details()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                assert dict(info.value.trailing_metadata())["err_no"] == "5000"
            assert call().outputs[0].tensor[0].alias_name == "outputs"
        empty = stub.inference
        with pytest.raises(grpc.RpcError) as info:
            empty(service_pb2.Request(), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty request" in info.value.details()
    with GrpcClient(server_fp32.address, ClientConfig.load(bundle_fp32.client)) as c:
        with pytest.raises(ServingError, match="unknown feed 'x'"):
            c.predict({"x": clip})


def test_bad_video_requests(server_fp32, val_clips, tmp_path):
    clip = val_clips[0][0]
    url = server_fp32.url
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    good_frames = base64.b64encode(frames.tobytes()).decode()
    cases = [
        ({"key": ["frames", "frames_shape"], "value": ["***not base64***", "(4, 32, 32, 3)"]}, "not valid base64"),
        ({"key": ["frames", "frames_shape"], "value": [good_frames, "(4, 32, 32, 2)"]}, "frames_shape must be"),
        (
            {"key": ["frames", "frames_shape"], "value": [good_frames, "__import__('os').system('true')"]},
            "is not a shape",
        ),
        ({"key": ["frames", "frames_shape"], "value": [good_frames, "(5, 32, 32, 3)"]}, "needs"),
        ({"key": ["frames"], "value": [good_frames]}, "missing key(s) ['frames_shape']"),
        ({"key": ["frames", "frames_shape"], "value": [good_frames]}, "same length"),
    ]
    for body, message in cases:
        status, _, answer = http_post(f"{url}/video/prediction", json.dumps(body).encode())
        err = json.loads(answer)
        assert status == 400 and err["err_no"] == 5000 and message in err["err_msg"], err
        assert http_post(f"{url}/GeneralModelService/inference", good_request(clip))[0] == 200
    status, _, answer = http_post(f"{url}/video/classify", b"\x00\x01" * 4096, "application/octet-stream")
    assert status == 400 and "cannot be decoded" in json.loads(answer)["error"]
    status, _, answer = http_post(f"{url}/video/classify", b"", "application/octet-stream")
    assert status == 400 and "empty body" in json.loads(answer)["error"]
    ok = VideoEndpointClient(server_fp32.url).predict_frames(frames)
    assert ok["err_no"] == 0


def test_a_changed_or_incomplete_bundle_refuses_to_start(bundle_fp32, tmp_path):
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(bundle_fp32.root, changed)
    params = changed / bundle_fp32.server.name / "model.pdiparams"
    data = bytearray(params.read_bytes())
    data[100] ^= 0xFF
    params.write_bytes(bytes(data))
    r = start_failure(changed / bundle_fp32.server.name)
    assert r.returncode == 2 and "model.pdiparams changed since packaging" in r.stderr, r.stderr
    incomplete = tmp_path / "incomplete"
    shutil.copytree(bundle_fp32.root, incomplete)
    (incomplete / bundle_fp32.server.name / "model.pdmodel").unlink()
    r = start_failure(incomplete / bundle_fp32.server.name)
    assert r.returncode == 2 and "bundle is incomplete" in r.stderr and "model.pdmodel" in r.stderr
    r = start_failure(tmp_path / "nothing_serving_server")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_sigterm_during_a_burst_finishes_or_fails_every_request(bundle_fp32, val_clips):
    clip = val_clips[0][:1]
    server = ServerProcess(bundle_fp32.server, "--workers", 2)
    conf = ClientConfig.load(bundle_fp32.client)
    outcomes, answered = [], threading.Event()

    kinds = (
        lambda: GrpcClient(server.address, conf, timeout=30),
        lambda: HttpClient(server.address, conf, timeout=30, mode="proto"),
        lambda: V2GrpcClient(server.address, conf, timeout=30),
        lambda: V2HttpClient(server.address, conf, timeout=30),
    )

    def one(i):
        client = kinds[i % 4]()
        start = time.perf_counter()
        try:
            with client:
                client.predict({"data_batch_0": clip})
            outcomes.append(("ok", time.perf_counter() - start, client.protocol))
            answered.set()
        except ServingError as exc:
            outcomes.append(("error", time.perf_counter() - start, str(exc)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for i, t in enumerate(threads):
        t.start()
        if i == 10:
            assert answered.wait(60)
            server.terminate()
        time.sleep(0.005)
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert len(outcomes) == 40
    # a request sent as the drain begins is answered or refused within seconds, never left to its 30 s
    # deadline (grpc.aio can drop a call at shutdown: the drain's short final gRPC grace cancels it)
    late = [o for o in outcomes if o[1] >= 15]
    assert not late, f"{late}\n{server.log()[-2000:]}"
    assert any(o[0] == "ok" for o in outcomes)
    assert server.stop() == 0, server.log()
    assert "draining" in server.log() and "stopped" in server.log()
    print(
        f"figure: SIGTERM mid-burst: {sum(o[0] == 'ok' for o in outcomes)} answered, "
        f"{sum(o[0] == 'error' for o in outcomes)} refused, slowest {max(o[1] for o in outcomes):.2f} s, exit 0"
    )
