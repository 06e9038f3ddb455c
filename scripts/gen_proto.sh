#!/usr/bin/env bash
# Regenerates the committed gRPC code in proto/ from proto/jitgate/v1/*.proto.
# tests/controlplane/test_proto_drift.py fails when the committed code is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=${1:-proto}
"$PY" -m grpc_tools.protoc -Iproto --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" proto/jitgate/v1/*.proto
