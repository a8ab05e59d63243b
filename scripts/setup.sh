#!/usr/bin/env bash
# Installs exactly the Debian 12 packages modeldock needs. Idempotent: packages already present
# are not reinstalled, and apt-get is skipped entirely when nothing is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates
  # The linker (CMakeLists.txt: MODELDOCK_LLD): links the LibTorch binaries ~3.5x faster.
  lld
  libtorch-dev libfaiss-dev libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev libabsl-dev libsqlite3-dev libpq-dev libssl-dev
  libcli11-dev nlohmann-json3-dev libstb-dev openssl
  # Audio query datasets (common/audio.cc): reading WAV/FLAC/Ogg, resampling to 16 kHz.
  libsndfile1-dev libsamplerate0-dev
  # The HTTP listener (http/): header-only, TLS through OpenSSL.
  libcpp-httplib-dev
  # Prometheus metrics (server/metrics.cc): its core library's registry and text encoder; the
  # package's civetweb exposer is not used (/metrics is served by http/).
  prometheus-cpp-dev
  libseccomp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # PostgreSQL 15's server binaries for the tests (scripts/postgres_test_server.sh); the
  # server itself links libpq only.
  postgresql-15
  dataset-fashion-mnist
  python3 python3-torch python3-numpy python3-scipy python3-sklearn python3-pil python3-grpcio
  python3-protobuf python3-prometheus-client
  python3-matplotlib
  # The Python client's wheel (client/python/pyproject.toml, the modeldock_wheel target) and its
  # test's venv with the system site packages (tests/python/wheel_test.py).
  python3-setuptools python3-wheel python3-build python3-venv
  fonts-dejavu-core fonts-liberation2 fonts-urw-base35 fonts-texgyre
  # Photographs and artwork for the colour probe sets (scripts/assets/colour_data.py; licences in
  # scripts/assets/README.md). lomiri-wallpapers' photographs are in its -16.04/-20.04 packages.
  plasma-workspace-wallpapers lomiri-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
  ukui-wallpapers desktop-base
  # Texts for the text probe set, reference encoder and demo models (scripts/assets/text_data.py;
  # licences in scripts/assets/README.md): fortune databases in four languages. The licence
  # texts of /usr/share/common-licenses come with base-files.
  fortunes fortunes-de fortunes-it fortunes-es base-files
  # Speech for the audio probe set, reference encoder, demo models and query folder
  # (scripts/assets/audio_data.py; licences in scripts/assets/README.md): espeak-ng speaks the
  # words (its libespeak-ng1 in-process), sox resamples and shifts them.
  espeak-ng sox
  # The Debian package (scripts/package.sh: CPack, dpkg-shlibdeps; CPack's DEB generator needs
  # `file` to find the binaries, absent from a minimal root such as the image's build stage) and
  # its test's check of the systemd unit (systemd-analyze).
  dpkg-dev file systemd
  # The package's test in a clean Debian 12 root (tests/deb_chroot_test.sh, run by scripts/test.sh
  # as root beside ctest).
  debootstrap
)

# The web page's test in a real browser (tests/python/http_browser_test.py): Debian's chromium,
# driven by chromium-driver and python3-selenium. Images without tests skip them
# (MODELDOCK_SETUP_NO_BROWSER=1, docker/Dockerfile).
if [[ "${MODELDOCK_SETUP_NO_BROWSER:-0}" != 1 ]]; then
  PACKAGES+=(chromium chromium-driver python3-selenium)
fi

# The buf CLI (proto lint, reflection test) comes from the npm registry: Node.js is needed only
# if the machine does not already have npm (Debian splits it into nodejs + npm).
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} missing Debian packages: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#PACKAGES[@]} Debian packages already installed"
fi
