#!/usr/bin/env bash
# Installs what a fresh Debian bookworm machine lacks for taskmeter's full test suite:
# GNU time (CLI reference), Chromium (timeline screenshots), the Zig toolchain of the prebuilds (from npm), and
# Debian's real NVML library and header
# (non-free; extracted into a machine-wide folder, ${TASKMETER_DEPS_DIR:-~/.cache/taskmeter-deps}, so that the NVIDIA
# driver stack is never installed and every clone on the machine finds them).
set -euo pipefail
deps="${TASKMETER_DEPS_DIR:-$HOME/.cache/taskmeter-deps}"
if [ ! -f /etc/apt/sources.list.d/taskmeter-nonfree.sources ]; then
  cat > /etc/apt/sources.list.d/taskmeter-nonfree.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq -o APT::Update::Error-Mode=any || apt-get update -qq || true
pkgs=()
command -v /usr/bin/time >/dev/null || pkgs+=(time)
command -v chromium >/dev/null || pkgs+=(chromium)
command -v xz >/dev/null || pkgs+=(xz-utils)
command -v valgrind >/dev/null || pkgs+=(valgrind)
command -v cmake >/dev/null || pkgs+=(cmake)
command -v ninja >/dev/null || pkgs+=(ninja-build)
command -v clang-format >/dev/null || pkgs+=(clang-format)  # npm run format:native
command -v pgrep >/dev/null || pkgs+=(procps)
command -v make >/dev/null || pkgs+=(make)  # the conformance suite (make -j2)
command -v less >/dev/null || pkgs+=(less)  # a pager in a terminal (test/cli.test.ts)
command -v x86_64-w64-mingw32-g++-posix >/dev/null || pkgs+=(g++-mingw-w64-x86-64-posix binutils-mingw-w64-x86-64)
# npm run test:ports: the linux-arm64 prebuild under qemu-user, the win32-x64 one under Wine
command -v qemu-aarch64 >/dev/null || pkgs+=(qemu-user)
command -v aarch64-linux-gnu-g++ >/dev/null || pkgs+=(g++-aarch64-linux-gnu)
[ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null || pkgs+=(wine64)
if [ ${#pkgs[@]} -gt 0 ]; then apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; fi
if [ ! -f "$deps/nvml/include/nvml.h" ] || ! ls "$deps"/nvml/lib/libnvidia-ml.so.1 >/dev/null 2>&1; then
  rm -rf "$deps/nvml" "$deps/debs" && mkdir -p "$deps/debs" "$deps/nvml/root"
  (cd "$deps/debs" && apt-get download libnvidia-ml1 libnvidia-ml-dev)
  for f in "$deps"/debs/*.deb; do dpkg -x "$f" "$deps/nvml/root"; done
  mkdir -p "$deps/nvml/lib" "$deps/nvml/include"
  lib=$(find "$deps/nvml/root" -name 'libnvidia-ml.so.1' | head -1)
  hdr=$(find "$deps/nvml/root" -name 'nvml.h' | head -1)
  [ -n "$lib" ] && [ -n "$hdr" ] || { echo "NVML debs did not contain libnvidia-ml.so.1 and nvml.h" >&2; exit 1; }
  cp -L "$lib" "$deps/nvml/lib/libnvidia-ml.so.1"
  cp "$hdr" "$deps/nvml/include/nvml.h"
fi
# The prebuilds' toolchain: Zig from the npm registry (scripts/zig.mjs: pinned version and integrity), machine-wide
# beside the NVML files; a no-op once installed.
TASKMETER_DEPS_DIR="$deps" node "$(dirname "$0")/zig.mjs" install >/dev/null
echo "system deps ready: $(/usr/bin/time --version 2>&1 | head -1); $(chromium --version 2>/dev/null); nvml in $deps/nvml"
