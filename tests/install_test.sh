#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then the installed binaries on their own: the server
# started without --asset-dir must find share/modeldock/assets beside its bin/, run its workers
# from bin/, and serve a register + recommend from the installed CLI; the installed Python
# package must import. Usage: install_test.sh BUILD_DIR
set -euo pipefail
# The installed server on its own: not the test run's shared probe embedding cache.
unset MODELDOCK_PROBE_CACHE_DIR
BUILD_DIR="$1"
TMP="$(mktemp -d /tmp/modeldock-install-test.XXXXXX)"
PREFIX="$TMP/prefix"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "install_test: FAIL: $*"; [[ -f "$TMP/server.log" ]] && tail -20 "$TMP/server.log"; exit 1; }

cmake --install "$BUILD_DIR" --prefix "$PREFIX" >"$TMP/install.log" || fail "cmake --install: $(tail -5 "$TMP/install.log")"
for f in bin/modeldock bin/modeldock-server bin/modeldock-worker \
         share/modeldock/assets/MANIFEST.json share/modeldock/assets/spaces.json \
         share/modeldock/assets/demo/fmnist-tops-cnn.pt \
         lib/python3/dist-packages/modeldock/v1/modeldock_pb2_grpc.py \
         share/doc/modeldock/README.md share/doc/modeldock/ARCHITECTURE.md; do
  [[ -e "$PREFIX/$f" ]] || fail "not installed: $f"
done
[[ ! -e "$PREFIX/share/modeldock/assets/fixtures" ]] || fail "test fixtures were installed"
# One version (CMake's project version) from all three binaries.
VERSION="$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$BUILD_DIR/CMakeCache.txt")"
for b in modeldock modeldock-server modeldock-worker; do
  [[ "$("$PREFIX/bin/$b" --version)" == "$b $VERSION" ]] || fail "$b --version: $("$PREFIX/bin/$b" --version)"
done

# The installed Python client imports from its dist-packages, not from the build tree.
PYTHONPATH="$PREFIX/lib/python3/dist-packages" /usr/bin/python3 -c \
  "import modeldock.v1.modeldock_pb2 as p, sys; sys.exit(0 if p.__file__.startswith('$PREFIX') else 1)" \
  || fail "the installed Python package does not import"

ASSETS="$PREFIX/share/modeldock/assets"
"$PREFIX/bin/modeldock-server" --listen 127.0.0.1:0 --data-dir "$TMP/data" --workers 1 \
  >"$TMP/server.out" 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do
  grep -q "listening on" "$TMP/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "the installed server did not start"
  sleep 0.1
done
grep -q "asset_dir=$ASSETS " "$TMP/server.log" || fail "the server did not default to $ASSETS"
export MODELDOCK_SERVER="$(sed -n 's/.*listening on //p' "$TMP/server.out" | head -1)"
CLI="$PREFIX/bin/modeldock"
"$CLI" register "$ASSETS/demo/fmnist-tops-cnn.pt" --metadata "$ASSETS/demo/fmnist-tops-cnn.json" \
  >"$TMP/register.out" || fail "register: $(cat "$TMP/register.out")"
grep -q "READY" "$TMP/register.out" || fail "the model did not become READY: $(cat "$TMP/register.out")"
QUERY="$ASSETS/demo/query_tops"
"$CLI" --json recommend "$QUERY/query-images-idx3-ubyte" --labels "$QUERY/query-labels-idx1-ubyte" \
  --top 1 >"$TMP/recommend.json" || fail "recommend"
/usr/bin/python3 -c "
import json, sys
r = json.load(open('$TMP/recommend.json'))
names = [x['model']['name'] if 'model' in x else x.get('name') for x in r['results']]
sys.exit(0 if names == ['fmnist-tops-cnn'] else 1)" || fail "unexpected answer: $(head -c 400 "$TMP/recommend.json")"
echo "install_test: OK (prefix $PREFIX)"
