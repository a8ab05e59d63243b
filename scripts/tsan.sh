#!/usr/bin/env bash
# ThreadSanitizer run of the concurrency tests: builds the index and dock tests with
# -fsanitize=thread into build-tsan/ and runs the tests that exercise concurrent callers
# (VectorIndex concurrent searches vs upserts/batches, the dock's parallel stage 2, the model
# worker pool's routing, kills, cancellation and shutdown, the probe queue's workers and lease
# renewal, the registry in memory under concurrent writes and reads, and - with
# MODELDOCK_TEST_PG_URL - two docks following each other on one PostgreSQL;
# not the crash test: TSan's own SIGSEGV handler turns the injected segfault into exit status 66).
# Not part of CI (an instrumented build takes several minutes more); run it after changing locking.
# LibTorch, FAISS and OpenBLAS are not instrumented: races inside them are not seen, and their
# OpenMP threads are silenced with OMP_NUM_THREADS=1 / OPENBLAS_NUM_THREADS=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${1:-$ROOT/build-tsan}"
"$ROOT/scripts/setup.sh"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}" CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"  # as build.sh
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMODELDOCK_SANITIZER=thread -DMODELDOCK_BUILD_BENCH=OFF \
  -DMODELDOCK_ASSET_DIR="${MODELDOCK_ASSET_DIR:-$ROOT/build/assets}" >/dev/null
cmake --build "$BUILD_DIR" -j "${MODELDOCK_JOBS:-$(nproc)}" --target index_test dock_test \
  sandbox_test modeldock-worker crafted_models probe_queue_test replica_sync_test \
  caching_store_test
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$ROOT/scripts/tsan.supp"
"$BUILD_DIR/index/index_test" --gtest_filter='*Concurrent*'
MODELDOCK_ASSET_DIR="${MODELDOCK_ASSET_DIR:-$ROOT/build/assets}" \
  "$BUILD_DIR/dock/dock_test" --gtest_filter='*LatencyBudget*:*TwoStage*:*SecondRecommend*:*SwitchOver*:*VersionsServe*:*Projected*:LayerTest.Scores*'
"$BUILD_DIR/sandbox/sandbox_test" --gtest_filter='*Good*:*Cancel*:*Waiting*:*Shutdown*'
"$BUILD_DIR/dock/probe_queue_test"
"$BUILD_DIR/dock/caching_store_test"
if [[ -n "${MODELDOCK_TEST_PG_URL:-}" ]]; then
  MODELDOCK_ASSET_DIR="${MODELDOCK_ASSET_DIR:-$ROOT/build/assets}" \
    "$BUILD_DIR/dock/replica_sync_test"
else
  echo "tsan: MODELDOCK_TEST_PG_URL is not set; replica_sync_test not run"
fi
echo "tsan: no data race reported"
