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
apt_pkgs=(tesseract-ocr seabios ca-certificates)
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
  .venv/bin/python -m pip install -q -e '.[ecs,qemu,libvirt,dask,test]'
else
  .venv/bin/python -m pip install -q -e '.[ecs,qemu]'
fi
# Console fonts for the screenshot reader are read from this machine, never shipped: SeaBIOS's
# VGA ROM (installed above) and a kernel image; without /boot/vmlinuz-*, take the one in Debian's
# current kernel package (downloaded, unpacked in a temp folder, never installed).
cache="${DIAGNOSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/diagnose}"
kernel_args=()
if [ ! -s "$cache/fonts/linux8x16.bin" ] && ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
  kdir=$(mktemp -d)
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -n "$pkg" ] && (cd "$kdir" && apt-get download -qq "$pkg" >/dev/null 2>&1 \
      && dpkg -x ./*.deb root); then
    kernel_args=(--kernel "$(ls "$kdir"/root/boot/vmlinuz-* | head -n 1)")
  fi
fi
.venv/bin/python -m diagnose.screen.font "${kernel_args[@]}"
[ -z "${kdir:-}" ] || rm -rf "$kdir"

echo "diagnose is set up: .venv/bin/diagnose --help"
