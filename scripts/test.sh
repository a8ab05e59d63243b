#!/usr/bin/env bash
# The test command: installs what is needed, builds everything, lints the API with buf, starts a
# throw-away PostgreSQL, runs the whole GoogleTest suite (plus the benchmark smoke run) through
# ctest and, beside it, the Debian package's clean-root test (tests/deb_chroot_test.sh), then a
# bounded fuzzing run of the parsers (scripts/fuzz.sh, build-fuzz/ with clang).
# Usage: scripts/test.sh [BUILD_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${1:-${MODELDOCK_BUILD_DIR:-$ROOT/build}}"
# OpenMP threads that spin while waiting make LibTorch/FAISS several times slower when processes
# share the cores (ctest -j, CI); passive waiting costs nothing measurable on an idle machine.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# OpenBLAS threads spin (sched_yield) between calls and steal the cores the other tests use; the
# metrics multiply small matrices, and OpenBLAS worker threads in a test process that also spawns
# subprocesses have deadlocked in its atfork handler.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
# The test build (and so CI) treats compiler warnings (-Wall -Wextra) as errors.
export MODELDOCK_WERROR="${MODELDOCK_WERROR:-ON}"
start=$(date +%s)

"$ROOT/scripts/build.sh" "$BUILD_DIR"

echo "test: buf lint (modeldock.v1 API conventions)"
(cd "$ROOT" && "$ROOT/tools/node_modules/.bin/buf" lint)

PG_DIR=""
CHROOT_PID=""
CHROOT_DIR=""
FUZZ_BUILD_PID=""
cleanup() {
  # A clean-root test still running (ctest failed): stop its process group; its trap unmounts.
  if [[ -n "$CHROOT_PID" ]]; then
    kill -TERM -- "-$CHROOT_PID" 2>/dev/null || true
    wait "$CHROOT_PID" 2>/dev/null || true
  fi
  # The fuzz targets' build still running (ctest failed): stop its process group.
  if [[ -n "$FUZZ_BUILD_PID" ]]; then
    kill -TERM -- "-$FUZZ_BUILD_PID" 2>/dev/null || true
    wait "$FUZZ_BUILD_PID" 2>/dev/null || true
  fi
  [[ -z "$CHROOT_DIR" ]] || rm -rf "$CHROOT_DIR"
  [[ -z "$PG_DIR" ]] || "$ROOT/scripts/postgres_test_server.sh" stop "$PG_DIR"
}
trap cleanup EXIT

# Waits for a job started beside ctest (PID LOG WHAT): fails the run with the tail of its log
# if it failed, else prints its log's last line and how long ctest waited for it. The caller
# clears the job's PID variable first, so that cleanup() no longer stops it.
wait_beside_ctest() {
  local pid=$1 log=$2 what=$3 t0
  t0=$(date +%s)
  if ! wait "$pid"; then
    tail -40 "$log"
    echo "test: $what FAILED (log: $log)"
    exit 1
  fi
  echo "test: $(tail -1 "$log") beside ctest (waited $(( $(date +%s) - t0 )) s after it)"
}

# PostgreSQL for the metadata store tests (dock/metadata_store_test, server_main_test): a
# throw-away server (scripts/postgres_test_server.sh), unless MODELDOCK_TEST_PG_URL already
# names one. MODELDOCK_SKIP_PG=1 skips those tests instead; without either they fail.
if [[ -z "${MODELDOCK_TEST_PG_URL:-}" && "${MODELDOCK_SKIP_PG:-}" != 1 ]]; then
  PG_DIR="$(mktemp -d /tmp/modeldock-pg-XXXXXX)"
  eval "$("$ROOT/scripts/postgres_test_server.sh" start "$PG_DIR")"
fi

# The Debian package in a clean Debian 12 root (tests/deb_chroot_test.sh: apt install, the
# installed server serves a register + recommend, purge), in the background while ctest runs:
# it waits mostly on the mirror and dpkg, and runs at nice 10 so that the tests keep the cores.
# It needs root, debootstrap (setup.sh installs it) and the Debian mirror; without them it is
# skipped, and says why. The package is made first, before ctest (cpack runs the build's
# install step). MODELDOCK_SKIP_CHROOT=1 skips it.
if [[ "${MODELDOCK_SKIP_CHROOT:-}" == 1 ]]; then
  echo "test: deb_chroot_test skipped (MODELDOCK_SKIP_CHROOT=1)"
elif why="$("$ROOT/tests/deb_chroot_test.sh" --check 2>&1)"; then
  CHROOT_DIR="$(mktemp -d /tmp/modeldock-test-deb.XXXXXX)"
  CHROOT_LOG="$BUILD_DIR/deb_chroot_test.log"
  t0=$(date +%s)
  "$ROOT/scripts/package.sh" "$BUILD_DIR" "$CHROOT_DIR" >"$CHROOT_DIR/package.log" 2>&1 \
    || { tail -20 "$CHROOT_DIR/package.log"; echo "test: scripts/package.sh failed"; exit 1; }
  echo "test: package.sh in $(( $(date +%s) - t0 )) s; deb_chroot_test in the background (log: $CHROOT_LOG)"
  # setsid: its own process group, so that cleanup() can stop it with its server (--wait: the
  # exit status, should setsid have to fork).
  setsid --wait nice -n 10 "$ROOT/tests/deb_chroot_test.sh" "$(ls "$CHROOT_DIR"/modeldock_*_amd64.deb)" \
    >"$CHROOT_LOG" 2>&1 </dev/null &
  CHROOT_PID=$!
else
  echo "test: deb_chroot_test skipped: ${why#deb_chroot_test: }"
fi

# The fuzz targets (clang, ASan/UBSan, build-fuzz/) are built beside ctest at nice 19, in the
# CPU the tests leave idle (they wait on servers, workers, subprocesses and wall-time limits): a
# cold build is ~200 s of CPU (docs/BENCHMARKS.md, "CI time"). The fuzzing itself runs after
# ctest, alone, for its full time.
FUZZ_BUILD_LOG="$BUILD_DIR/fuzz_build.log"
setsid --wait nice -n 19 "$ROOT/scripts/fuzz.sh" --build-only >"$FUZZ_BUILD_LOG" 2>&1 </dev/null &
FUZZ_BUILD_PID=$!

echo "test: ctest"
# One probe embedding cache for every dock the tests open (--probe-cache-dir): each space's
# reference encoder runs on its probe set once per test run instead of once per test process.
export MODELDOCK_PROBE_CACHE_DIR="$BUILD_DIR/test-cache"
rm -rf "$MODELDOCK_PROBE_CACHE_DIR"
# Longest tests first: ctest orders by the costs of the last run, and a fresh build directory
# starts from the costs of a clean-clone CI run (tests/ctest_costs.txt), so that no long test
# starts last and runs alone.
COSTS="$BUILD_DIR/Testing/Temporary/CTestCostData.txt"
if [[ ! -f "$COSTS" ]]; then
  mkdir -p "$(dirname "$COSTS")" && cp "$ROOT/tests/ctest_costs.txt" "$COSTS"
fi
# One test per core: a third test on two cores (tried) leaves the tests that race a wall-clock
# limit against a model (HostileModelTest's memory hog) too little CPU under load.
TEST_JOBS="${MODELDOCK_TEST_JOBS:-$(nproc)}"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$TEST_JOBS" --timeout 600

if [[ -n "$CHROOT_PID" ]]; then
  pid=$CHROOT_PID
  CHROOT_PID=""
  wait_beside_ctest "$pid" "$CHROOT_LOG" deb_chroot_test
fi

# libFuzzer (ASan/UBSan) on every parser of untrusted bytes: a bounded run, 4 s per target, once
# the targets' build beside ctest is done (fuzz.sh's own build step then finds nothing to do).
pid=$FUZZ_BUILD_PID
FUZZ_BUILD_PID=""
wait_beside_ctest "$pid" "$FUZZ_BUILD_LOG" "the fuzz targets' build"
echo "test: fuzz"
"$ROOT/scripts/fuzz.sh" "${MODELDOCK_FUZZ_SECONDS:-36}"

echo "test: all passed in $(( $(date +%s) - start )) s"
