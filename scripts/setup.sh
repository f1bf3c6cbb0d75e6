#!/usr/bin/env bash
# Set up diagnose on a fresh Debian 12 machine (as root, or with sudo) and in a local venv.
#   bash scripts/setup.sh          # the tool: Python venv + system packages it uses
#   bash scripts/setup.sh --test   # also what the tests need (pytest, ruff, chromium, qemu, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# System packages: tesseract for screenshots; for the tests also a browser (report checks),
# QEMU + busybox + e2fsprogs (the real-VM lab and live tests), and python3-venv where missing.
apt_pkgs=(tesseract-ocr ca-certificates)
if [ "$want_test" = 1 ]; then
  apt_pkgs+=(chromium qemu-system-x86 qemu-utils busybox-static e2fsprogs cpio
             libvirt-dev pkg-config gcc python3-dev)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
py=${PYTHON:-python3}
if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
# the lab downloads kernel packages with apt-get download: it needs package lists
need_lists=0
if [ "$want_test" = 1 ] && [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial)" ]; then
  need_lists=1
fi
if [ ${#missing[@]} -gt 0 ] || [ "$need_lists" = 1 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || \
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[ecs,qemu,libvirt,test]'
else
  .venv/bin/python -m pip install -q -e '.[ecs,qemu]'
fi
echo "diagnose is set up: .venv/bin/diagnose --help"
