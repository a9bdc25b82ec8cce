"""The plug-in points work as CONTRIBUTING.md says, without editing any other file: a runtime registered here is
offered by every ``--runtime`` and measured by ``--runtime auto``; a protocol front end registered here is
served on the shared port beside Paddle Serving's and v2; a client protocol registered here is built by
``make_client`` and offered by the CLI."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import threading

import numpy as np
import pytest
import requests

from vslim import runtime_registry
from vslim.cli.main import build_parser
from vslim.inference import PaddlePredictor, Predictor, inspect_model, open_predictor
from vslim.inference.base import FeedChecks
from vslim.registry import Registry


class DummyPredictor(FeedChecks):
    """A runtime that delegates to Paddle (so it computes the model right) under another name."""

    runtime = "dummy"

    def __init__(self, model_dir, config=None, info=None):
        self._inner = PaddlePredictor(model_dir, dataclasses.replace(config, runtime="paddle"), info)
        self.info, self.precision, self.config = self._inner.info, self._inner.precision, config
        self.input_names, self.output_names = self._inner.input_names, self._inner.output_names
        self.calls = 0

    def run_feeds(self, feeds, fetch=None):
        self.calls += 1
        return self._inner.run_feeds(feeds, fetch)

    def clone(self):
        twin = object.__new__(DummyPredictor)
        twin.__dict__.update(self.__dict__, _inner=self._inner.clone())
        return twin

    def describe(self):
        return {**self._inner.describe(), "runtime": self.runtime}


DUMMY = runtime_registry.Runtime("dummy", ("fp32",), DummyPredictor, summary="a test's stand-in runtime")


def _choices(parser: argparse.ArgumentParser, *path: str, flag: str = "--runtime") -> list[str]:
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    for action in parser._actions:
        if flag in action.option_strings:
            return list(action.choices)
    for group in parser._action_groups:
        for action in group._group_actions:
            if flag in action.option_strings:
                return list(action.choices)
    raise AssertionError(f"{flag} not found under {path}")


def test_a_registered_runtime_is_offered_by_every_runtime_flag():
    assert "dummy" not in runtime_registry.choices()
    with runtime_registry.registered(DUMMY):
        parser = build_parser()
        for path in (("serve",), ("package",), ("predict",), ("bench", "runtime")):
            try:
                choices = _choices(parser, *path)
            except AssertionError:
                continue  # a command without --runtime
            assert "dummy" in choices, path
        assert "dummy" in _choices(parser, "serve") and "dummy" in _choices(parser, "package")
        from vslim.config import PredictorConfig

        assert PredictorConfig(runtime="dummy").validate().runtime == "dummy"
    from vslim.config import PredictorConfig
    from vslim.errors import ConfigError

    with pytest.raises(ConfigError, match="must be one of auto, paddle"):
        PredictorConfig(runtime="dummy").validate()  # gone with its registration
    assert "dummy" not in _choices(build_parser(), "serve")


@pytest.mark.slow
def test_a_registered_runtime_is_measured_by_auto_and_opened_by_its_row(fp32_small, tmp_path, monkeypatch):
    from vslim.config import PredictorConfig
    from vslim.inference.selection import measure

    # only the reference and the stand-in: no conversion to ONNX for this test
    only_paddle: Registry = Registry()
    only_paddle.register("paddle", runtime_registry.get("paddle"))
    monkeypatch.setattr(runtime_registry, "_RUNTIMES", only_paddle)
    with runtime_registry.registered(DUMMY):
        info = inspect_model(fp32_small)
        record = measure(fp32_small, info, tmp_path / "converted", threads=1, iterations=2)
        rows = {(r["runtime"], r["precision"]): r for r in record["table"]}
        assert rows["dummy", "fp32"]["status"] == "ok", rows
        assert rows["dummy", "fp32"]["cosine_vs_paddle"] > 0.9999
        assert record["chosen"]["runtime"] in ("paddle", "dummy")
        predictor = open_predictor(fp32_small, PredictorConfig(runtime="dummy", threads=1))
        assert isinstance(predictor, DummyPredictor) and isinstance(predictor, Predictor)
        x = np.zeros((1, *info.inputs[0].shape[1:]), np.float32)
        np.testing.assert_array_equal(predictor.run(x), PaddlePredictor(fp32_small).run(x))
        assert predictor.describe()["runtime"] == "dummy"


def test_every_registered_runtime_class_satisfies_the_predictor_interface():
    """The rows' classes (imported, not instantiated) have every member of the interface."""
    members = [m for m in dir(Predictor) if not m.startswith("_")] + list(Predictor.__annotations__)
    for row in runtime_registry.rows():
        cls = row.load_factory()
        missing = [m for m in members if not hasattr(cls, m) and m not in ("info", "precision", *_INSTANCE)]
        assert not missing, (row.name, missing)


_INSTANCE = ("input_names", "output_names", "config")


# --------------------------------------------------------------------------- a protocol front end


def _dummy_frontend():
    import grpc
    from fastapi import APIRouter

    from vslim.serving.protocols import Frontend
    from vslim.serving.service import Call

    def router(repo):
        api = APIRouter()

        @api.get("/dummy/models")
        def models():
            with Call(repo, "dummy-http", "models", "dummy models") as call:  # the shared request wrapper
                names = repo.names()
            assert call.refusal is None
            return {"protocol": "dummy", "models": names}

        return api

    def add_grpc(server, repo):
        def echo(request: bytes, context) -> bytes:
            return b"dummy:" + ",".join(repo.names()).encode() + b":" + request

        handler = grpc.method_handlers_generic_handler(
            "vslim.Dummy", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        return ["vslim.Dummy"]

    return Frontend(
        "dummy",
        http_router=router,
        add_grpc=add_grpc,
        http_label="dummy-http",
        grpc_label="dummy-grpc",
        owns_path=lambda path: path.startswith("/dummy/"),
        grpc_prefix="/vslim.Dummy/",
        grpc_methods=("/vslim.Dummy/Echo",),
        describe=lambda model: f"dummy /dummy/models lists {model}",
    )


@pytest.mark.server
def test_a_registered_protocol_frontend_is_served_on_the_shared_port(bundle_fp32, val_clips):
    import grpc

    from vslim.serving import protocols
    from vslim.serving.client import make_client
    from vslim.serving.config import ServerConfig
    from vslim.serving.server import run_server

    clips = val_clips[0]
    started, holder = threading.Event(), {}

    def on_ready(running):
        holder["server"] = running
        started.set()

    def run():
        try:
            holder["code"] = asyncio.run(
                run_server(ServerConfig(bundle=str(bundle_fp32.server), port=0), on_ready, install_signals=False)
            )
        except BaseException as exc:
            holder["error"] = exc
            started.set()

    with protocols.registered(_dummy_frontend()):
        assert [f.name for f in protocols.frontends()] == ["paddle_serving", "v2", "dummy"]
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert started.wait(120) and "error" not in holder, holder.get("error")
        running = holder["server"]
        address = f"127.0.0.1:{running.port}"
        try:
            answer = requests.get(f"http://{address}/dummy/models", timeout=30)
            assert answer.status_code == 200 and answer.json() == {"protocol": "dummy", "models": ["small"]}
            with grpc.insecure_channel(address) as channel:
                echo = channel.unary_unary("/vslim.Dummy/Echo")
                assert echo(b"ping", timeout=30) == b"dummy:small:ping"
            for name in ("grpc", "v2-http"):  # the built-in protocols still answer on the same port
                with make_client(name, address, bundle_fp32.client) as client:
                    assert client.predict({"data_batch_0": clips[:1]})["outputs"].shape == (1, 10)
            metrics = requests.get(f"http://{address}/metrics", timeout=30).text
            assert any('protocol="dummy-http"' in line and 'endpoint="models"' in line for line in metrics.splitlines())
        finally:
            running.stop()
            thread.join(60)
    assert holder.get("code") == 0
    assert [f.name for f in protocols.frontends()] == ["paddle_serving", "v2"]


# --------------------------------------------------------------------------- a client protocol


def test_a_registered_client_protocol_is_built_by_make_client_and_offered_by_the_cli():
    from vslim.serving import client_registry
    from vslim.serving.client import make_client
    from vslim.serving.client_base import Client

    class EchoClient(Client):
        protocol = "echo"

        def predict(self, feed, fetch=None, log_id=0):
            return {"echo": next(iter(feed.values()))}

    row = client_registry.ClientProtocol("echo", EchoClient, "a test's stand-in", "echo", "http")
    with client_registry.registered(row):
        with make_client("echo", "127.0.0.1:1") as client:
            assert isinstance(client, EchoClient) and client.address == "127.0.0.1:1"
            assert client.predict({"x": np.ones(2)})["echo"].tolist() == [1.0, 1.0]
        assert "echo" in _choices(build_parser(), "client", flag="--protocol")
        assert "echo" in client_registry.protocol_names(tensors_only=True)
        assert client_registry.describe("echo") == "echo (a test's stand-in)"
    assert "echo" not in client_registry.protocol_names()
