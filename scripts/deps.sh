#!/bin/sh
# scripts/deps.sh — install the Debian packages peftlua builds and tests with (Debian 12).
# Skips everything already installed; uses sudo when not root. PEFT_NO_DEPS=1 skips.
set -e
[ -n "$PEFT_NO_DEPS" ] && exit 0
PKGS="build-essential pkg-config liblua5.4-dev libopenblas-dev libcjson-dev libgd-dev libcmocka-dev
lua5.4 libreadline-dev libmicrohttpd-dev fonts-dejavu-core python3 python3-pip unzip chromium chromium-driver
cmake libopenmpi-dev openmpi-bin clang libclang-rt-14-dev libomp-dev"
if [ "$(uname -s)" = Darwin ]; then
  echo "deps: on macOS install with Homebrew: brew install lua openblas cjson gd cmocka readline pkg-config libmicrohttpd (open-mpi: optional)" >&2
  exit 0
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "deps: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# PyPI packages the tests drive (the other tools whose readers prove our formats), pinned in
# scripts/requirements-test.txt; installed only where one is missing.
REQ="$(dirname "$0")/requirements-test.txt"
if [ -s "$REQ" ] && ! python3 "$(dirname "$0")/pyreq_ok.py" "$REQ" 2>/dev/null; then
  echo "deps: installing PyPI packages from $REQ"
  # Debian's own python3 refuses plain pip installs (PEP 668); a pyenv/venv python does not.
  python3 -m pip install -q --disable-pip-version-check -r "$REQ" ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages -r "$REQ"
fi
