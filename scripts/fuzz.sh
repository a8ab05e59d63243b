#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes (the dataset readers, the server's request decoding) with
# libFuzzer + ASan/UBSan: builds the fuzz/ targets with clang into build-fuzz/, then runs each for
# its share of SECONDS_TOTAL on a copy of its seed corpus (fuzz/corpus/ is never written to).
# Fails if any target crashes, leaks, times out or runs out of memory, and prints the input.
# Usage: scripts/fuzz.sh [SECONDS_TOTAL]   (default 60; MODELDOCK_FUZZ_BUILD_DIR, MODELDOCK_JOBS)
#        scripts/fuzz.sh --build-only         (builds the targets, runs none: scripts/test.sh
#                                              builds them beside ctest, then fuzzes after it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_ONLY=0
if [[ "${1:-}" == --build-only ]]; then
  BUILD_ONLY=1
  shift
fi
SECONDS_TOTAL="${1:-60}"
BUILD_DIR="${MODELDOCK_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
JOBS="${MODELDOCK_JOBS:-$(nproc)}"
start=$(date +%s)

# The project's packages (CMake configures every folder), then clang and its libFuzzer runtime.
"$ROOT/scripts/setup.sh"
missing=()
for pkg in clang libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "fuzz: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}" CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"  # as build.sh
CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMODELDOCK_FUZZ=ON -DMODELDOCK_BUILD_TESTS=OFF -DMODELDOCK_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" --target modeldock_fuzzers
echo "fuzz: built in $(( $(date +%s) - start )) s"
if ((BUILD_ONLY)); then exit 0; fi

# target:max_len (bytes). Images need room for a JPEG's tables; the rest stay small and fast.
TARGETS=(
  idx_fuzzer:4096
  npy_fuzzer:4096
  csv_fuzzer:2048
  image_fuzzer:16384
  dataset_fuzzer:4096
  recommend_request_fuzzer:2048
  register_request_fuzzer:1024
  worker_frame_fuzzer:2048
  text_frames_fuzzer:2048
)
share=$(( SECONDS_TOTAL / ${#TARGETS[@]} ))
if (( share < 1 )); then share=1; fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
for entry in "${TARGETS[@]}"; do
  target="${entry%%:*}"
  max_len="${entry##*:}"
  run_dir="$BUILD_DIR/fuzz-run/$target"
  rm -rf "$run_dir"
  mkdir -p "$run_dir/corpus"
  cp -R "$ROOT/fuzz/corpus/$target/." "$run_dir/corpus/"
  log="$run_dir/log.txt"
  if "$BUILD_DIR/fuzz/$target" "$run_dir/corpus" -max_total_time="$share" -max_len="$max_len" \
      -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$run_dir/" -print_final_stats=1 \
      >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    added=$(sed -n 's/^stat::new_units_added: *//p' "$log")
    echo "fuzz: $target ok (${share} s, ${runs:-?} inputs run, ${added:-?} new)"
  else
    failed+=("$target")
    echo "fuzz: $target FAILED; log: $log"
    grep -E 'ERROR: |SUMMARY: |FUZZ_CHECK failed|runtime error' "$log" | head -5 | sed 's/^/  /'
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [[ -n "$artifact" ]]; then echo "  crash input: $artifact"; fi
  fi
done

echo "fuzz: done in $(( $(date +%s) - start )) s"
if ((${#failed[@]})); then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
  exit 1
fi
echo "fuzz: no crash in ${#TARGETS[@]} targets"
