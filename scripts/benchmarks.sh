#!/usr/bin/env bash
# Reproduce docs/benchmarks.md: build the models, then run every benchmark into docs/benchmarks/.
#   scripts/benchmarks.sh [WORKDIR]      (default ./bench-work; the demo's models are reused when present)
# Takes about 90 minutes on 2 cores. Nothing else should run meanwhile: these are timings.
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-bench-work}"
OUT=docs/benchmarks
BIN=.venv/bin
mkdir -p "$W" "$OUT"

$BIN/vslim demo --workdir "$W/demo" >/dev/null
[ -d "$W/r50_fp32" ] || $BIN/vslim export --arch pptsm_r50 --random-init --num-classes 400 --out "$W/r50_fp32"
[ -d "$W/r50_int8" ] || $BIN/vslim-quant --model-dir "$W/r50_fp32" --calib-list "$W/demo/data/calib.list" \
    --out "$W/r50_int8" --algo avg --batch-size 2 --batch-nums 4 >/dev/null
[ -d "$W/r50_bundle" ] || $BIN/vslim-package --target serving --model-dir "$W/r50_int8" --out "$W/r50_bundle" \
    --name pptsm_r50_int8
[ -d "$W/small_fp32_bundle" ] || $BIN/vslim-package --target serving --model-dir "$W/demo/fp32" \
    --out "$W/small_fp32_bundle" --name small
[ -d "$W/small_bundle" ] || $BIN/vslim-package --target serving --model-dir "$W/demo/int8" --out "$W/small_bundle" \
    --name pptsm_small_int8

rm -rf "$OUT"/runtime_r50 "$OUT"/runtime_small "$OUT"/e2e_r50 "$OUT"/e2e_small "$OUT"/serving_r50 "$OUT"/serving_small \
    "$OUT"/serving_ray "$OUT"/serving_ray_r50
$BIN/vslim-bench runtime --model pptsm_r50_fp32="$W/r50_fp32" --model pptsm_r50_int8="$W/r50_int8" \
    --batch-sizes 1,2 --threads 2 --warmup 2 --iterations 10 --agreement-list "$W/demo/data/val.list" \
    --out "$OUT/runtime_r50" >/dev/null
$BIN/vslim-bench runtime --model pptsm_small_fp32="$W/demo/fp32" --model pptsm_small_int8="$W/demo/int8" \
    --batch-sizes 1,4,8 --threads 1,2 --warmup 5 --iterations 50 --agreement-list "$W/demo/data/val.list" \
    --out "$OUT/runtime_small" >/dev/null
rm -rf "$OUT"/runtime_r50_peers
$BIN/vslim-bench runtime --model pptsm_r50_fp32="$W/r50_fp32" --model pptsm_r50_int8="$W/r50_int8" \
    --backends paddle-onednn,paddle-bf16,onnxruntime,openvino --batch-sizes 1 --threads 2 --warmup 2 --iterations 10 \
    --agreement-list "$W/demo/data/val.list" --out "$OUT/runtime_r50_peers" >/dev/null
$BIN/vslim-bench e2e --model "$W/r50_int8" --iterations 30 --out "$OUT/e2e_r50" >/dev/null
$BIN/vslim-bench e2e --model "$W/demo/int8" --iterations 30 --out "$OUT/e2e_small" >/dev/null
$BIN/vslim-bench serving --bundle "$W/r50_bundle/pptsm_r50_int8_serving_server" --concurrency 1,4,8 \
    --requests 40 --duration 40 --batching 1,8 --batch-timeout-ms 2 --out "$OUT/serving_r50" >/dev/null
$BIN/vslim-bench serving --bundle "$W/small_bundle/pptsm_small_int8_serving_server" --concurrency 1,4,8,16 \
    --requests 400 --duration 20 --batching 1,8 --batch-timeout-ms 2 --out "$OUT/serving_small" >/dev/null
# the shared port's kernel relay against the stream relay and a port per transport (--grpc-port), and v2 gRPC
# with the tensor in shared memory, at concurrency 1
rm -rf "$OUT"/serving_r50_relay
[ -d "$W/r50_bundle_paddle" ] || $BIN/vslim-package --target serving --model-dir "$W/r50_int8" \
    --out "$W/r50_bundle_paddle" --name pptsm_r50_int8 --runtime paddle
$BIN/vslim-bench serving --bundle "$W/r50_bundle_paddle/pptsm_r50_int8_serving_server" \
    --protocols grpc,v2-grpc,http-proto,v2-http,v2-grpc-shm --concurrency 1 --batching 1 --split-ports --requests 60 \
    --duration 40 --out "$OUT/serving_r50_relay" >/dev/null
# video in, label out: whole files to v2's NAME_video model (the server decodes) beside the tensor path, same load
rm -rf "$OUT"/serving_r50_video
$BIN/vslim-bench serving --bundle "$W/r50_bundle_paddle/pptsm_r50_int8_serving_server" --protocols v2-grpc,v2-http \
    --concurrency 1,4,8 --batching 1,8 --batch-timeout-ms 2 --video "$W/demo/data/demo.mp4" --requests 40 --duration 40 \
    --out "$OUT/serving_r50_video" >/dev/null
# Ray Serve's hop through its proxies and with direct ingress (each alternating round by round with a vslim-serve
# sized like one replica), and 1 vs 2 replicas (needs the ray extra)
$BIN/vslim-bench serving --bundle "$W/small_fp32_bundle/small_serving_server" --protocols v2-grpc,v2-http \
    --concurrency 1,4 --batching 1 --requests 150 --duration 15 --threads 1 --ray local --ray-replicas 1,2 \
    --ray-ingress proxy,direct --out "$OUT/serving_ray" >/dev/null
$BIN/vslim-bench serving --bundle "$W/r50_bundle/pptsm_r50_int8_serving_server" --protocols grpc,v2-grpc,v2-http \
    --concurrency 1,8 --batching 1 --requests 48 --duration 60 --threads 2 --ray local --ray-replicas 1 \
    --cpus-per-replica 2 --ray-ingress proxy,direct --rounds 3 --out "$OUT/serving_ray_r50" >/dev/null
# throughput under concurrency against the peers built by hand (each contender in its own process, one at a time,
# interleaved rounds): vslim-serve from the FP32 model packaged with --runtime auto (NNCF INT8 a candidate) and from
# the INT8 model, against OpenVINO (THROUGHPUT hint, async requests) and ONNX Runtime, FP32 and their own INT8
[ -d "$W/r50_auto" ] || $BIN/vslim-package --target serving --model-dir "$W/r50_fp32" --out "$W/r50_auto" \
    --name pptsm_r50 --calib-list "$W/demo/data/calib.list"
rm -rf "$OUT"/throughput_r50 "$OUT"/throughput_r50_video "$OUT"/throughput_small
$BIN/vslim-bench throughput --bundle "$W/r50_auto/pptsm_r50_serving_server" \
    --bundle "$W/r50_bundle/pptsm_r50_int8_serving_server" --model "$W/r50_fp32" --calib-list "$W/demo/data/calib.list" \
    --concurrency 1,4,8 --duration 15 --rounds 2 --max-batch-size 4 --out "$OUT/throughput_r50" >/dev/null
# the same with the tensors handed over in system shared memory (Triton's extension; the server gets --allow-client-shm)
rm -rf "$OUT"/throughput_r50_shm
$BIN/vslim-bench throughput --bundle "$W/r50_auto/pptsm_r50_serving_server" \
    --bundle "$W/r50_bundle/pptsm_r50_int8_serving_server" --model "$W/r50_fp32" --calib-list "$W/demo/data/calib.list" \
    --peers openvino,openvino-nncf-int8 --protocol v2-grpc-shm --concurrency 1,4,8 --duration 15 --rounds 2 \
    --max-batch-size 1 --out "$OUT/throughput_r50_shm" >/dev/null
# concurrency 8 alone, tensors over v2 gRPC, against OpenVINO's FP32 and NNCF INT8 (the rerun after the protobuf copies went)
rm -rf "$OUT"/throughput_r50_c8
$BIN/vslim-bench throughput --bundle "$W/r50_auto/pptsm_r50_serving_server" \
    --bundle "$W/r50_bundle/pptsm_r50_int8_serving_server" --model "$W/r50_fp32" --calib-list "$W/demo/data/calib.list" \
    --peers openvino,openvino-nncf-int8 --concurrency 8 --duration 15 --rounds 2 --max-batch-size 1 \
    --out "$OUT/throughput_r50_c8" >/dev/null
# the FP32 bundle alone against OpenVINO by hand (the peers run paddle2onnx's graph as it comes, vslim its rewrite of
# the temporal shifts), tensors and then whole video files
rm -rf "$OUT"/throughput_r50_rewrite "$OUT"/throughput_r50_video_rewrite
$BIN/vslim-bench throughput --bundle "$W/r50_auto/pptsm_r50_serving_server" --model "$W/r50_fp32" \
    --calib-list "$W/demo/data/calib.list" --peers openvino,openvino-nncf-int8 --concurrency 1,4,8 --duration 15 \
    --rounds 2 --max-batch-size 1 --out "$OUT/throughput_r50_rewrite" >/dev/null
# INT8 against INT8: vslim's NNCF INT8 (from its conversion) and the PaddleSlim INT8 model on Paddle, against NNCF by hand
[ -d "$W/r50_nncf" ] || $BIN/vslim-package --target serving --model-dir "$W/r50_fp32" --out "$W/r50_nncf" \
    --name pptsm_r50_nncf --runtime openvino --precision int8 --calib-list "$W/demo/data/calib.list"
rm -rf "$OUT"/throughput_r50_int8_rewrite
$BIN/vslim-bench throughput --bundle "$W/r50_nncf/pptsm_r50_nncf_serving_server" \
    --bundle "$W/r50_bundle/pptsm_r50_int8_serving_server" --model "$W/r50_fp32" --calib-list "$W/demo/data/calib.list" \
    --peers openvino-nncf-int8 --concurrency 1,4,8 --duration 15 --rounds 2 --max-batch-size 1 \
    --out "$OUT/throughput_r50_int8_rewrite" >/dev/null
# the served hop with the FP32 bundle (OpenVINO BF16 with the rewrite), one request at a time
rm -rf "$OUT"/serving_r50_rewrite
$BIN/vslim-bench serving --bundle "$W/r50_auto/pptsm_r50_serving_server" \
    --protocols grpc,v2-grpc,http-proto,v2-http,v2-grpc-shm --concurrency 1 --batching 1 --requests 60 --duration 40 \
    --out "$OUT/serving_r50_rewrite" >/dev/null
# the small model at 1-16 in flight (the served path's own cost against a ~1 ms model)
[ -d "$W/small_auto" ] || $BIN/vslim-package --target serving --model-dir "$W/demo/fp32" --out "$W/small_auto" \
    --name pptsm_small --calib-list "$W/demo/data/calib.list"
$BIN/vslim-bench throughput --bundle "$W/small_auto/pptsm_small_serving_server" \
    --bundle "$W/small_bundle/pptsm_small_int8_serving_server" --model "$W/demo/fp32" \
    --calib-list "$W/demo/data/calib.list" --concurrency 1,4,8,16 --duration 8 --rounds 2 --max-batch-size 8 \
    --out "$OUT/throughput_small" >/dev/null
# video in, label out: whole files to vslim-serve against PaddleVideo's preprocessing in the client + the peer
[ -f "$W/k400like.mp4" ] || $BIN/python -c "from pathlib import Path; from vslim.benchmarks.e2e import make_video; \
make_video(Path('$W/k400like.mp4'), 10, 30, 340, 256)"
$BIN/vslim-bench throughput --bundle "$W/r50_auto/pptsm_r50_serving_server" \
    --bundle "$W/r50_bundle/pptsm_r50_int8_serving_server" --model "$W/r50_fp32" --calib-list "$W/demo/data/calib.list" \
    --peers openvino,openvino-nncf-int8 --video "$W/k400like.mp4" --concurrency 4,8 --duration 15 --rounds 2 \
    --max-batch-size 1 --out "$OUT/throughput_r50_video" >/dev/null
$BIN/vslim-bench throughput --bundle "$W/r50_auto/pptsm_r50_serving_server" --model "$W/r50_fp32" \
    --calib-list "$W/demo/data/calib.list" --peers openvino,openvino-nncf-int8 --video "$W/k400like.mp4" \
    --concurrency 4,8 --duration 15 --rounds 2 --max-batch-size 1 --out "$OUT/throughput_r50_video_rewrite" >/dev/null
echo "wrote $OUT"
