#!/usr/bin/env bash
# Build the C++ client out of tree (default: build/cpp_client at the repository root).
# Needs Debian's libgrpc++-dev, protobuf-compiler-grpc, libprotobuf-dev, cmake and g++.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build/cpp_client}"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DVSLIM_WERROR="${VSLIM_WERROR:-ON}" >/dev/null
cmake --build "$build" -j "$(nproc)"
echo "$build/vslim_cpp_client"
