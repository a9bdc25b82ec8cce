"""Run by the clients' own environment (.venv-clients), not the stack's: KServe's SDK against a vslim server.

argv: HOST:PORT MODEL INPUT.npy OUT.json. Health, readiness, metadata, and inference with JSON and binary
tensors over REST and with raw and typed contents over gRPC, and the errors for an unknown model; what each
call answered is written to OUT.json for the test to check against vslim's own answer.
"""

import asyncio
import json
import sys

import httpx
import numpy as np
from grpc.aio import AioRpcError
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelMetadataRequest
from kserve.protocol.infer_type import RequestedOutput

ADDRESS, MODEL, INPUT, OUT = sys.argv[1:5]
BASE = f"http://{ADDRESS}"


def tensor(array: np.ndarray, binary: bool) -> InferInput:
    inp = InferInput("data_batch_0", list(array.shape), "FP32")
    inp.set_data_from_numpy(array, binary_data=binary)
    return inp


async def main() -> dict:
    x = np.load(INPUT)
    out = {}
    async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=60)) as rest:
        out["rest_live"] = await rest.is_server_live(BASE)
        out["rest_ready"] = await rest.is_server_ready(BASE)
        out["rest_model_ready"] = await rest.is_model_ready(BASE, MODEL)
        out["rest_metadata"] = (await rest._client.get(f"{BASE}/v2/models/{MODEL}")).json()
        r = await rest.infer(BASE, InferRequest(MODEL, [tensor(x, binary=False)]), model_name=MODEL)
        out["rest_json"] = r.outputs[0].as_numpy().tolist()
        request = InferRequest(
            MODEL, [tensor(x, binary=True)], request_outputs=[RequestedOutput("outputs", {"binary_data": True})]
        )
        r = await rest.infer(BASE, request, model_name=MODEL)
        out["rest_binary"] = r.outputs[0].as_numpy().tolist()
        try:
            await rest.infer(BASE, InferRequest("no_such_model", [tensor(x, binary=False)]), model_name="no_such_model")
        except httpx.HTTPStatusError as exc:
            out["rest_unknown"] = exc.response.status_code
        try:
            bad = InferInput("data_batch_0", [1, 2], "FP32", data=[1.0, 2.0])
            await rest.infer(BASE, InferRequest(MODEL, [bad]), model_name=MODEL)
        except httpx.HTTPStatusError as exc:
            out["rest_bad_shape"] = [exc.response.status_code, exc.response.json().get("error", "")]
    async with InferenceGRPCClient(ADDRESS, timeout=60, retries=0) as g:
        out["grpc_live"] = await g.is_server_live()
        out["grpc_ready"] = await g.is_server_ready()
        out["grpc_model_ready"] = await g.is_model_ready(MODEL)
        meta = await g._client_stub.ModelMetadata(ModelMetadataRequest(name=MODEL))
        out["grpc_metadata"] = {
            "name": meta.name,
            "versions": list(meta.versions),
            "inputs": [[i.name, i.datatype, list(i.shape)] for i in meta.inputs],
        }
        r = await g.infer(InferRequest(MODEL, [tensor(x, binary=True)]))
        out["grpc_raw"] = r.outputs[0].as_numpy().tolist()
        typed = InferInput("data_batch_0", list(x.shape), "FP32", data=x.ravel().tolist())
        r = await g.infer(InferRequest(MODEL, [typed]))
        out["grpc_typed"] = r.outputs[0].as_numpy().tolist()
        try:
            await g.is_model_ready("no_such_model")
        except AioRpcError as exc:
            out["grpc_unknown"] = exc.code().name
    return out


if __name__ == "__main__":
    with open(OUT, "w") as f:
        json.dump(asyncio.run(main()), f)
