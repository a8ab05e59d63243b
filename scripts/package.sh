#!/usr/bin/env bash
# Makes the release artefacts from a finished build (scripts/build.sh BUILD_DIR first):
# dist/modeldock_<version>_amd64.deb (CPack DEB; see packaging/ and docs/INSTALL.md) and the
# Python client's wheel dist/modeldock-<version>-py3-none-any.whl (the build's modeldock_wheel
# target; docs/PYTHON.md).
# Usage: scripts/package.sh [BUILD_DIR] [OUT_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$(cd "${1:-$ROOT/build}" && pwd)"
OUT_DIR="${2:-$ROOT/dist}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
[[ -x "$BUILD_DIR/server/modeldock-server" ]] || { echo "package: build first (scripts/build.sh $BUILD_DIR)"; exit 1; }
[[ -f "$BUILD_DIR/assets/MANIFEST.json" ]] || { echo "package: no assets in $BUILD_DIR/assets"; exit 1; }
(cd "$BUILD_DIR" && cpack -G DEB -B "$OUT_DIR/_cpack" >"$OUT_DIR/cpack.log" 2>&1) \
  || { tail -20 "$OUT_DIR/cpack.log"; exit 1; }
mv "$OUT_DIR"/_cpack/*.deb "$OUT_DIR"/
rm -rf "$OUT_DIR/_cpack"
VERSION="$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$BUILD_DIR/CMakeCache.txt")"
WHEEL="$BUILD_DIR/dist/modeldock-$VERSION-py3-none-any.whl"
[[ -f "$WHEEL" ]] || { echo "package: no $WHEEL (cmake --build $BUILD_DIR builds it)"; exit 1; }
cp "$WHEEL" "$OUT_DIR"/
ls "$OUT_DIR"/*.deb "$OUT_DIR"/*.whl
