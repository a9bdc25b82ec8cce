"""The serving core in process, with a numpy stand-in for the predictor: the engine's batching, failures and
drain, and every protocol front end (the HTTP app through Starlette's test client, the gRPC services on an
in-process ``grpc.aio`` server) with each refusal kind checked against each protocol's table.

What these tests claim is the engine's and the front ends' behaviour; Paddle is not part of it (the process
level tests run real models). Seconds, not minutes: no model is trained and no process started.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vslim.inference.base import FeedChecks, Predictor
from vslim.inference.model_info import ModelInfo
from vslim.inference.program import TensorSpec
from vslim.model_meta import ModelMeta
from vslim.serving.engine import InferenceEngine
from vslim.serving.errors import INTERNAL, INVALID, NOT_FOUND, TOO_LARGE, UNAVAILABLE, UNSUPPORTED, RequestError

CLASSES = 10
CLIP = (8, 3, 4, 4)


class FakePredictor(FeedChecks):
    """Answers ``2 * the first CLASSES values`` of each item; ``delay`` seconds per run; a clip whose first value
    is negative fails its whole batch (as an inference error would). A :class:`Predictor` like every runtime's."""

    runtime, precision = "fake", "fp32"

    def __init__(self, info: ModelInfo, delay: float = 0.0):
        self.info, self.delay = info, delay
        self.input_names = [s.name for s in info.inputs]
        self.output_names = [s.name for s in info.outputs]
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def describe(self):
        return {"model": "fake", "runtime": self.runtime, "precision": self.precision}

    def run_feeds(self, feeds, fetch=None):
        x = feeds[self.input_spec.name]
        self.gate.wait(30)
        if self.delay:
            time.sleep(self.delay)
        self.batches.append(len(x))
        if (x.reshape(len(x), -1)[:, 0] < 0).any():
            raise RuntimeError("the stand-in predictor was told to fail")
        return {self.info.outputs[0].name: 2 * x.reshape(len(x), -1)[:, :CLASSES]}

    def clone(self):
        return self


def _info() -> ModelInfo:
    meta = ModelMeta(num_classes=CLASSES, labels=[f"class{i}" for i in range(CLASSES)], arch="fake")
    return ModelInfo(
        Path("fake"),
        Path("fake/model.pdmodel"),
        Path("fake/model.pdiparams"),
        (TensorSpec("data_batch_0", (-1, *CLIP), np.dtype("float32")),),
        (TensorSpec("scores", (-1, CLASSES), np.dtype("float32")),),
        False,
        meta,
    )


def _clip(value: float, shape=CLIP) -> np.ndarray:
    x = np.full((1, *shape), 0.5, dtype=np.float32)
    x.reshape(-1)[0] = value
    return x


# --------------------------------------------------------------------------- the engine


def _engine(predictor, *args, **kw) -> InferenceEngine:
    engine = InferenceEngine(predictor, *args, **kw)
    engine.wait_warm(30)  # the workers start taking requests once the server has seen them warm
    return engine


def test_the_stand_in_is_a_predictor_like_every_runtimes():
    predictor = FakePredictor(_info())
    assert isinstance(predictor, Predictor)
    np.testing.assert_array_equal(predictor.run(_clip(0.25)), 2 * _clip(0.25).reshape(1, -1)[:, :CLASSES])


def test_requests_merge_only_with_equal_shapes_and_each_gets_its_own_answer():
    predictor = FakePredictor(_info())
    predictor.gate.clear()  # hold the worker: the queue fills
    engine = _engine(predictor, workers=1, max_batch_size=4, batch_timeout_ms=50)
    try:
        blocker = engine.submit({"data_batch_0": _clip(9.0)}, ["scores"])
        time.sleep(0.1)
        small = [engine.submit({"data_batch_0": _clip(float(i))}, ["scores"]) for i in range(3)]
        other = [engine.submit({"data_batch_0": _clip(float(i), (8, 3, 4, 5))}, ["scores"]) for i in range(2)]
        predictor.gate.set()
        assert blocker.result(30)["scores"][0, 0] == 18.0
        for i, f in enumerate(small + other):
            assert f.result(30)["scores"].shape == (1, CLASSES) and f.result()["scores"][0, 0] == 2 * (
                i % 3 if i < 3 else i - 3
            )
        assert predictor.batches == [1, 3, 2]  # the blocker alone, then one batch per shape
    finally:
        engine.close(10)


def test_batches_stop_at_the_maximum():
    predictor = FakePredictor(_info())
    predictor.gate.clear()
    engine = _engine(predictor, workers=1, max_batch_size=4, batch_timeout_ms=50)
    try:
        futures = [engine.submit({"data_batch_0": _clip(float(i))}, ["scores"]) for i in range(10)]
        predictor.gate.set()
        assert [f.result(30)["scores"][0, 0] for f in futures] == [2.0 * i for i in range(10)]
        assert max(predictor.batches) <= 4 and sum(predictor.batches) == 10
    finally:
        engine.close(10)


def test_a_lone_request_does_not_wait_for_company():
    """A batch timeout far longer than the test: a lone request that waited for it would never answer in time."""
    predictor = FakePredictor(_info())
    engine = _engine(predictor, workers=1, max_batch_size=8, batch_timeout_ms=600_000)
    try:
        assert engine.submit({"data_batch_0": _clip(1.0)}, ["scores"]).result(60)["scores"][0, 0] == 2.0
        assert predictor.batches == [1]
    finally:
        engine.close(10)


def test_a_failing_batch_fails_its_requests_only_and_close_drains_the_queue():
    predictor = FakePredictor(_info())
    predictor.gate.clear()
    engine = _engine(predictor, workers=1, max_batch_size=1)
    bad = engine.submit({"data_batch_0": _clip(-1.0)}, ["scores"])
    good = [engine.submit({"data_batch_0": _clip(float(i))}, ["scores"]) for i in range(3)]
    predictor.gate.set()
    with pytest.raises(RuntimeError, match="told to fail"):
        bad.result(30)
    engine.close(30)  # queued requests still run
    assert [f.result(0)["scores"][0, 0] for f in good] == [0.0, 2.0, 4.0]
    assert engine.problem() is None
    with pytest.raises(RequestError) as info:
        engine.submit({"data_batch_0": _clip(1.0)}, ["scores"])
    assert info.value.kind == UNAVAILABLE


# --------------------------------------------------------------------------- the front ends


@pytest.fixture(scope="module")
def served():
    """A repository of the stand-in model (``fake``), as vslim-serve builds it, with a small request limit."""
    from vslim.serving.bundle import ServingBundle, model_config
    from vslim.serving.config import ServerConfig
    from vslim.serving.repository import ModelRepository
    from vslim.serving.server import make_service

    info = _info()
    cfg = ServerConfig(bundle="fake_serving_server", max_request_batch=2, max_body_mb=1)

    def opener(cfg, source, metrics):
        bundle = ServingBundle(Path("fake_serving_server"), model_config(info), info, None)
        service = make_service(cfg, bundle, metrics, name=source.name)
        service.engine = _engine(FakePredictor(info), 1, 1, 0, service.observe_batch)
        return service

    repo = ModelRepository(cfg, opener)
    repo.start_blocking()
    return repo


@pytest.fixture(scope="module")
def http(served):
    from fastapi.testclient import TestClient

    from vslim.serving.http_app import make_http_app
    from vslim.serving.protocols import frontends

    with TestClient(make_http_app(served, frontends())) as client:
        yield client


def _v2_body(x: np.ndarray, name: str = "data_batch_0") -> dict:
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def _ps_body(x: np.ndarray) -> dict:
    return {
        "tensor": [
            {
                "float_data": x.ravel().tolist(),
                "elem_type": 1,
                "name": "data_batch_0",
                "alias_name": "data_batch_0",
                "shape": list(x.shape),
            }
        ],
        "fetch_var_names": ["outputs"],
    }


@pytest.fixture()
def unloading(served):
    """The model refuses new requests, as while it is unloaded; restored afterwards."""
    service = served.get("fake")

    def set_(value: bool):
        service.unloading = value

    yield set_
    service.unloading = False


def _refusals(served, unloading):
    """(kind, what triggers it over v2 HTTP, over Paddle Serving HTTP) for every request-error kind."""
    two = np.concatenate([_clip(1.0)] * 3)  # over --max-request-batch 2
    return [
        (
            INVALID,
            lambda c: c.post("/v2/models/fake/infer", json=_v2_body(_clip(1.0, (8, 3, 4, 5))), headers={}),
            lambda c: c.post("/GeneralModelService/inference", json=_ps_body(_clip(1.0, (8, 3, 4, 5)))),
        ),
        (NOT_FOUND, lambda c: c.post("/v2/models/nope/infer", json=_v2_body(_clip(1.0))), None),
        (
            TOO_LARGE,
            lambda c: c.post("/v2/models/fake/infer", json=_v2_body(two)),
            lambda c: c.post("/GeneralModelService/inference", json=_ps_body(two)),
        ),
        (
            UNSUPPORTED,
            None,
            lambda c: c.post("/GeneralModelService/inference", content=b"x", headers={"Content-Type": "text/plain"}),
        ),
        (
            INTERNAL,
            lambda c: c.post("/v2/models/fake/infer", json=_v2_body(_clip(-1.0))),
            lambda c: c.post("/GeneralModelService/inference", json=_ps_body(_clip(-1.0))),
        ),
        (
            UNAVAILABLE,
            lambda c: (unloading(True), c.post("/v2/models/fake/infer", json=_v2_body(_clip(1.0))))[1],
            lambda c: (unloading(True), c.post("/GeneralModelService/inference", json=_ps_body(_clip(1.0))))[1],
        ),
    ]


def test_http_front_ends_answer_each_refusal_from_their_tables(served, http, unloading):
    from vslim.serving.protocols.paddle_serving import errors as ps
    from vslim.serving.protocols.v2 import errors as v2

    r = http.post("/v2/models/fake/infer", json=_v2_body(_clip(3.0)))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"][0] == 6.0
    r = http.post("/GeneralModelService/inference", json=_ps_body(_clip(3.0)))
    assert r.status_code == 200 and r.json()["outputs"][0]["tensor"][0]["float_data"][0] == 6.0
    for kind, over_v2, over_ps in _refusals(served, unloading):
        if over_v2:
            r = over_v2(http)
            assert r.status_code == v2.HTTP_STATUS[kind] and r.json()["error"], (kind, r.text)
        if over_ps:
            r = over_ps(http)
            assert r.status_code == ps.HTTP_STATUS[kind] and r.json()["err_no"] == ps.ERR_NO[kind], (kind, r.text)
        unloading(False)
    # the server kept serving, and counted what it refused
    assert http.post("/v2/models/fake/infer", json=_v2_body(_clip(1.0))).status_code == 200
    metrics = http.get("/metrics").text
    assert 'vslim_requests_total{endpoint="infer",model="fake",outcome="internal",protocol="v2-http"} 1.0' in metrics
    assert 'vslim_requests_total{endpoint="infer",model="",outcome="not_found",protocol="v2-http"} 1.0' in metrics
    stats = http.get("/v2/models/fake/stats").json()["model_stats"][0]["inference_stats"]
    assert stats["compute_input"]["count"] == stats["compute_infer"]["count"] == stats["compute_output"]["count"]


def _in_thread(serve, ready: threading.Event):
    """Run the coroutine function ``serve`` on its own event loop in a thread, once it says ``ready``;
    (loop, thread)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    return loop, thread


def _v2_grpc(port: int):
    """A channel to an in-process gRPC server, and its v2 ModelInfer taking (model, batch array)."""
    import grpc

    from vslim.serving.protocols.v2.proto import SERVICE_NAME, pb

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(
        f"/{SERVICE_NAME}/ModelInfer", pb.ModelInferRequest.SerializeToString, pb.ModelInferResponse.FromString
    )

    def request(model: str, x: np.ndarray):
        msg = pb.ModelInferRequest(model_name=model)
        msg.inputs.add(name="data_batch_0", datatype="FP32", shape=list(x.shape))
        msg.raw_input_contents.append(x.astype("<f4").tobytes())
        return msg

    return channel, call, request


def test_grpc_front_ends_answer_each_refusal_from_their_tables(served, unloading):
    import grpc

    from vslim.serving.grpc_server import make_grpc_server
    from vslim.serving.protocols import frontends
    from vslim.serving.protocols.v2 import errors as v2

    ready = threading.Event()
    holder = {}

    async def serve():
        server, health = make_grpc_server(served, frontends(), 8 << 20)
        holder["port"] = server.add_insecure_port("127.0.0.1:0")
        holder["stop"] = stop = asyncio.Event()
        await server.start()
        ready.set()
        await stop.wait()
        await server.stop(0)

    loop, thread = _in_thread(serve, ready)
    channel, infer, request = _v2_grpc(holder["port"])
    try:
        out = infer(request("fake", _clip(3.0)), timeout=30)
        assert np.frombuffer(out.raw_output_contents[0], "<f4")[0] == 6.0
        cases = [
            (INVALID, request("fake", _clip(1.0, (8, 3, 4, 5)))),
            (NOT_FOUND, request("nope", _clip(1.0))),
            (TOO_LARGE, request("fake", np.concatenate([_clip(1.0)] * 3))),
            (INTERNAL, request("fake", _clip(-1.0))),
            (UNAVAILABLE, request("fake", _clip(1.0))),
        ]
        for kind, msg in cases:
            unloading(kind == UNAVAILABLE)
            with pytest.raises(grpc.RpcError) as info:
                infer(msg, timeout=30)
            assert info.value.code() == v2.GRPC_STATUS[kind], (kind, info.value.details())
        unloading(False)
        # Paddle Serving's GeneralModelService, through its wire format
        from vslim.serving.protocols.paddle_serving import errors as ps
        from vslim.serving.protocols.paddle_serving.grpc import SERVICE_NAME as PS
        from vslim.serving.protocols.paddle_serving.types import fill_tensor, service_pb2

        ps_infer = channel.unary_unary(
            f"/{PS}/inference", service_pb2.Request.SerializeToString, service_pb2.Response.FromString
        )

        def ps_request(x):
            msg = service_pb2.Request(fetch_var_names=["outputs"])
            t = msg.tensor.add(name="data_batch_0", alias_name="data_batch_0")
            fill_tensor(t, x)
            return msg

        assert ps_infer(ps_request(_clip(2.0)), timeout=30).outputs[0].tensor[0].float_data[0] == 4.0
        for kind, x in ((INVALID, _clip(1.0, (8, 3, 4, 5))), (INTERNAL, _clip(-1.0)), (UNAVAILABLE, _clip(1.0))):
            unloading(kind == UNAVAILABLE)
            with pytest.raises(grpc.RpcError) as info:
                ps_infer(ps_request(x), timeout=30)
            assert info.value.code().name == ps.GRPC_STATUS[kind], (kind, info.value.details())
            assert dict(info.value.trailing_metadata())["err_no"] == str(ps.ERR_NO[kind])
        unloading(False)
    finally:
        channel.close()
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(30)
        assert not thread.is_alive()


def test_split_ports_http_connections_get_tcp_nodelay():
    """``--grpc-port``'s HTTP socket makes asyncio set TCP_NODELAY on each connection (without it Nagle's
    algorithm held every answer's second segment until the client's delayed ACK)."""
    import socket

    from vslim.serving.listeners import _tcp_listener

    listener = _tcp_listener("127.0.0.1", 0)
    seen = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def run():
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    asyncio.run(run())
    assert seen and seen[0] != 0


def test_many_workers_under_concurrency_answer_every_request_with_its_own_answer():
    """Several workers (a measured layout may choose them) with batching, eight submitters at once and every
    thirteenth request failing its batch: every request resolves, each answer is its own input's, no answer is
    lost or given twice, and the engine stays healthy."""
    predictor = FakePredictor(_info(), delay=0.001)
    engine = _engine(predictor, workers=3, max_batch_size=4, batch_timeout_ms=2)
    futures: dict[int, object] = {}
    lock = threading.Lock()

    def submitter(start: int) -> None:
        for i in range(start, 240, 8):
            future = engine.submit({"data_batch_0": _clip(-1.0 if i % 13 == 0 else float(i))}, ["scores"])
            with lock:
                futures[i] = future

    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(futures) == 240
        answered = failed = 0
        for i, future in futures.items():
            error = future.exception(30)
            if error is None:
                assert future.result()["scores"][0, 0] == 2.0 * i, i
                answered += 1
            else:
                assert "told to fail" in str(error)
                failed += 1
            if i % 13 == 0:
                assert error is not None, f"request {i} should have failed"
        assert answered + failed == 240 and sum(predictor.batches) == 240
        assert answered >= 240 - 19 * 4  # at most a whole batch fails with each bad request
    finally:
        engine.close(10)


def test_a_request_admitted_before_an_unload_is_answered_and_later_ones_are_refused(served, unloading):
    # the request is admitted, then (while it is still decoding its body) the unload begins: it is answered;
    # a request arriving after the flag is refused with UNAVAILABLE
    service = served.get("fake")
    with service.admitted():
        unloading(True)
        out = asyncio.run(service.run({"data_batch_0": _clip(2.0)}, ["scores"], "test"))
        assert out["scores"][0, 0] == 4.0
        with pytest.raises(RequestError) as refused:
            service.admitted().__enter__()
        assert refused.value.kind == UNAVAILABLE and "being unloaded" in str(refused.value)
    assert service.active == 0


def test_the_drain_answers_admitted_requests_and_cancels_a_stalled_call_without_waiting_out_the_grace():
    """SIGTERM's drain (``server._drain``) on the real gRPC front ends: a request admitted before it began is
    answered; a call that never reaches admission (grpc.aio can drop one it takes from its core as shutdown
    begins: stood in for here by a handler that never returns) is cancelled once the admitted work is done,
    after the short final grace -- not at the end of the 30 s grace period, a client's usual deadline."""
    import grpc

    from vslim.serving import server as vserver
    from vslim.serving.bundle import ServingBundle, model_config
    from vslim.serving.config import ServerConfig
    from vslim.serving.grpc_server import make_grpc_server
    from vslim.serving.protocols import frontends
    from vslim.serving.repository import ModelRepository

    info = _info()
    predictor = FakePredictor(info)
    cfg = ServerConfig(bundle="fake_serving_server", grace_seconds=30.0)

    def opener(cfg, source, metrics):
        bundle = ServingBundle(Path("fake_serving_server"), model_config(info), info, None)
        service = vserver.make_service(cfg, bundle, metrics, name=source.name)
        service.engine = _engine(predictor, 1, 1, 0, service.observe_batch)
        return service

    repo = ModelRepository(cfg, opener)
    repo.start_blocking()
    ready, drained = threading.Event(), {}
    holder: dict = {}

    async def stall(request, context):
        await asyncio.Event().wait()

    class Nothing:
        async def stop_accepting(self):
            pass

        async def close_connections(self, timeout):
            pass

    async def serve():
        server, health = make_grpc_server(repo, frontends(), 8 << 20)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Stall", {"Call": grpc.unary_unary_rpc_method_handler(stall)}),)
        )
        holder["port"] = server.add_insecure_port("127.0.0.1:0")
        holder["go"] = go = asyncio.Event()
        await server.start()
        ready.set()
        await go.wait()
        http_task = asyncio.ensure_future(asyncio.sleep(0))
        start = time.perf_counter()
        await vserver._drain(cfg, repo, health, Nothing(), server, type("Http", (), {})(), http_task)
        drained["seconds"] = time.perf_counter() - start

    loop, thread = _in_thread(serve, ready)
    channel, infer, request = _v2_grpc(holder["port"])
    msg = request("fake", _clip(3.0))
    outcomes: dict = {}

    def call(name, fn):
        start = time.perf_counter()
        try:
            outcomes[name] = ("ok", fn(), time.perf_counter() - start)
        except grpc.RpcError as exc:
            outcomes[name] = (exc.code(), exc.details(), time.perf_counter() - start)

    predictor.gate.clear()  # the admitted request waits in the predictor until the drain has begun
    stalled = channel.unary_unary("/test.Stall/Call")
    threads = [
        threading.Thread(target=call, args=("admitted", lambda: infer(msg, timeout=30))),
        threading.Thread(target=call, args=("stalled", lambda: stalled(b"", timeout=30))),
    ]
    try:
        for t in threads:
            t.start()
        deadline = time.time() + 30
        while repo.get("fake").active == 0 and time.time() < deadline:
            time.sleep(0.01)
        assert repo.get("fake").active == 1
        loop.call_soon_threadsafe(holder["go"].set)
        time.sleep(0.3)
        predictor.gate.set()
        for t in threads:
            t.join(40)
        thread.join(40)
    finally:
        predictor.gate.set()
        channel.close()
    kind, answer, _ = outcomes["admitted"]
    assert kind == "ok" and np.frombuffer(answer.raw_output_contents[0], "<f4")[0] == 6.0
    code, _, seconds = outcomes["stalled"]
    assert code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE) and seconds < 15, outcomes["stalled"]
    assert drained["seconds"] < 15, drained
    print(
        f"figure: drain answered the admitted request and cancelled the stalled call after {seconds:.1f} s "
        f"(grace 30 s); drain {drained['seconds']:.1f} s"
    )
