#!/usr/bin/env bash
# Regenerates rayservice.yaml from vslim's own options (never edit the manifest by hand).
# The bundle path is where deploy/Dockerfile puts the bundle inside the image.
set -euo pipefail
cd "$(dirname "$0")"
VSLIM_SERVE=${VSLIM_SERVE:-vslim-serve}
"$VSLIM_SERVE" --bundle /models/bundle/pptsm_serving_server --ray-config rayservice \
    --name pptsm --replicas 2 --cpus-per-replica 2 --max-batch-size 4 --host 0.0.0.0 2>/dev/null
