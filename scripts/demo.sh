#!/usr/bin/env bash
# The main job on embedded defaults: builds modeldock, starts modeldock-server on a fresh data
# directory, registers the sample models, lists them and asks for a recommendation.
# Usage: scripts/demo.sh [BUILD_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${1:-${MODELDOCK_BUILD_DIR:-$ROOT/build}}"
# OpenMP threads that spin while waiting make LibTorch/FAISS several times slower when processes
# share the cores (ctest -j, CI); passive waiting costs nothing measurable on an idle machine.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# One OpenMP thread per call: concurrent calls are the server's parallelism (bench/replicas).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

"$ROOT/scripts/build.sh" "$BUILD_DIR"

ASSETS="$BUILD_DIR/assets"
DATA_DIR="$(mktemp -d /tmp/modeldock-demo.XXXXXX)"
LOG="$DATA_DIR/server.log"
SERVER_OUT="$DATA_DIR/server.out"
"$BUILD_DIR/server/modeldock-server" --listen 127.0.0.1:0 --data-dir "$DATA_DIR/data" \
  --asset-dir "$ASSETS" --http-listen "${MODELDOCK_HTTP_LISTEN:-127.0.0.1:0}" \
  >"$SERVER_OUT" 2>"$LOG" &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  if grep -q "listening on" "$SERVER_OUT" 2>/dev/null; then break; fi
  if ! kill -0 $SERVER_PID 2>/dev/null; then echo "demo: server failed to start:"; cat "$LOG"; exit 1; fi
  sleep 0.1
done
ADDR="$(sed -n 's/.*listening on //p' "$SERVER_OUT" | head -1)"
export MODELDOCK_SERVER="$ADDR"
CLI="$BUILD_DIR/client/modeldock"
echo "== modeldock-server listening on $ADDR (data: $DATA_DIR/data, log: $LOG)"
HTTP_URL="$(sed -n 's/.*HTTP API listening on \(http[^ ]*\).*/\1/p' "$LOG" | head -1)"
echo "== web page and REST API: $HTTP_URL (curl ${HTTP_URL}v1/models)"

echo "== health"
"$CLI" health

echo "== registering the sample models"
for model in "$ASSETS"/demo/*.pt "$ASSETS"/demo/colour/*.pt "$ASSETS"/demo/text/*.pt; do
  "$CLI" register "$model" --metadata "${model%.pt}.json"
done

echo "== list"
"$CLI" list

QUERY="$ASSETS/demo/query_tops"
echo "== recommend for a Fashion-MNIST query (tops: T-shirt/top, Pullover, Coat, Shirt; 50 each)"
echo "\$ modeldock recommend query-images-idx3-ubyte --labels query-labels-idx1-ubyte --top 5"
"$CLI" recommend "$QUERY/query-images-idx3-ubyte" --labels "$QUERY/query-labels-idx1-ubyte" --top 5

echo "== stage 1 alone (probe proxies: no model runs), as JSON"
"$CLI" --json recommend "$QUERY/query-images-idx3-ubyte" --labels "$QUERY/query-labels-idx1-ubyte" \
  --top 5 --metric none
echo
PHOTOS="$ASSETS/demo/query_emoji"
echo "== recommend for a folder of colour images (one sub-folder per class; PNG, 32x32)"
echo "\$ modeldock recommend query_emoji/ --top 5"
"$CLI" recommend "$PHOTOS" --top 5
echo
echo "== recommend for a CSV of texts (a 'text' and a 'label' column; English fortunes, 4 topics)"
echo "\$ modeldock recommend query_text.csv --top 5"
"$CLI" recommend "$ASSETS/demo/query_text.csv" --top 5

echo "== the same over HTTP: the first result of POST /v1/recommend (curl -F)"
curl -s -F dataset=@"$QUERY/query-images-idx3-ubyte" -F labels=@"$QUERY/query-labels-idx1-ubyte" \
  -F 'options={"top": 1}' "${HTTP_URL}v1/recommend" | sed -n 's/^      "name": "\(.*\)",$/  rank 1: \1/p'
echo
echo "== demo done"
