#!/usr/bin/env bash
# The Debian package (scripts/package.sh, CPack DEB): builds it from BUILD_DIR and checks its
# control data (name, version, the runtime dependencies dpkg-shlibdeps found, conffiles,
# maintainer scripts), its contents (binaries, assets, Python client, unit, /etc config), the
# systemd unit (systemd-analyze verify, with no complaint), and that the packaged binaries run
# from the unpacked tree with the packaged config file. Not tested here: installing it with apt
# into a clean Debian root (README, "Installing"). Usage: package_test.sh BUILD_DIR
set -euo pipefail
# The installed server on its own: not the test run's shared probe embedding cache.
unset MODELDOCK_PROBE_CACHE_DIR
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$1"
TMP="$(mktemp -d /tmp/modeldock-package-test.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "package_test: FAIL: $*"; exit 1; }

"$ROOT/scripts/package.sh" "$BUILD_DIR" "$TMP/dist" >"$TMP/package.log" 2>&1 || fail "package.sh: $(tail -5 "$TMP/package.log")"
VERSION="$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$BUILD_DIR/CMakeCache.txt")"
DEB="$TMP/dist/modeldock_${VERSION}_amd64.deb"
[[ -f "$DEB" ]] || fail "no $DEB: $(ls "$TMP/dist")"
# The Python client's wheel beside it, the build's very file (wheel_test.py checks its contents).
cmp "$TMP/dist/modeldock-${VERSION}-py3-none-any.whl" "$BUILD_DIR/dist/modeldock-${VERSION}-py3-none-any.whl" \
  || fail "package.sh did not copy the wheel: $(ls "$TMP/dist")"

field() { dpkg-deb -f "$DEB" "$1"; }
[[ "$(field Package)" == modeldock ]] || fail "Package: $(field Package)"
[[ "$(field Version)" == "$VERSION" ]] || fail "Version: $(field Version)"
for dep in adduser libtorch1.13 libgrpc++1.51 libprotobuf32 libsqlite3-0 libpq5 libseccomp2; do
  field Depends | tr ',' '\n' | grep -q "^ *$dep\b" || fail "Depends lacks $dep: $(field Depends)"
done
# Nothing of the build: no compilers, no -dev packages.
if field Depends | grep -q -- "-dev\|gcc \|g++\|cmake"; then fail "Depends pulls build tools: $(field Depends)"; fi
dpkg-deb --ctrl-tarfile "$DEB" | tar -t >"$TMP/control.list"
for f in postinst prerm postrm conffiles; do grep -q "^\./$f$" "$TMP/control.list" || fail "control lacks $f"; done
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles >"$TMP/conffiles"
diff <(sort "$TMP/conffiles") <(printf '/etc/modeldock/modeldock.env\n/etc/modeldock/server.json\n') \
  || fail "conffiles differ"

mkdir "$TMP/root"
dpkg-deb -x "$DEB" "$TMP/root"
for f in usr/bin/modeldock usr/bin/modeldock-server usr/bin/modeldock-worker \
         usr/share/modeldock/assets/spaces.json usr/share/modeldock/assets/demo/fmnist-tops-cnn.pt \
         usr/lib/python3/dist-packages/modeldock/__init__.py \
         usr/lib/systemd/system/modeldock.service etc/modeldock/server.json \
         usr/share/doc/modeldock/README.md; do
  [[ -e "$TMP/root/$f" ]] || fail "not in the package: $f"
done
[[ ! -e "$TMP/root/usr/share/modeldock/assets/fixtures" ]] || fail "test fixtures are in the package"

# The unit, pointed at the unpacked server: systemd-analyze must not complain about any line.
UNIT="$TMP/modeldock.service"
sed "s#/usr/bin/modeldock-server#$TMP/root/usr/bin/modeldock-server#" \
  "$TMP/root/usr/lib/systemd/system/modeldock.service" >"$UNIT"
systemd-analyze verify "$UNIT" >"$TMP/verify.log" 2>&1 || fail "systemd-analyze: $(cat "$TMP/verify.log")"
[[ ! -s "$TMP/verify.log" ]] || fail "systemd-analyze complains: $(cat "$TMP/verify.log")"

# The packaged binaries run; the server reads the packaged config (flags move it off the
# service's address and data directory) and finds the packaged assets beside its bin/.
for b in modeldock modeldock-server modeldock-worker; do
  [[ "$("$TMP/root/usr/bin/$b" --version)" == "$b $VERSION" ]] || fail "$b --version"
done
"$TMP/root/usr/bin/modeldock-server" --config "$TMP/root/etc/modeldock/server.json" \
  --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$TMP/data" --workers 1 \
  >"$TMP/server.out" 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do
  grep -q "listening on" "$TMP/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "the packaged server did not start: $(tail -5 "$TMP/server.log")"
  sleep 0.1
done
grep -q "asset_dir=$TMP/root/usr/share/modeldock/assets " "$TMP/server.log" \
  || fail "the server did not default to the packaged assets"
ADDR="$(sed -n 's/.*listening on //p' "$TMP/server.out" | head -1)"
[[ "$("$TMP/root/usr/bin/modeldock" --server "$ADDR" health)" == SERVING ]] || fail "health"
echo "package_test: OK ($(du -h "$DEB" | cut -f1) $(basename "$DEB"))"
