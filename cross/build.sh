#!/usr/bin/env bash
# Cross-builds outpost-agent for the boxes and routers and runs each result's --version under qemu.
#
#   cross/build.sh [TARGET...]     default: aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf
#
# aarch64-unknown-linux-musl       static, for OpenWrt-class routers and boxes
# armv7-unknown-linux-gnueabihf    glibc target linked with +crt-static (rustup has no armv7 musl target here)
#
# Linkers are Debian's gcc cross compilers; the results run under qemu-user-static and `file` checks they
# are static. Installs what is missing (apt packages, through sudo when not root; rustup targets)
# idempotently. Binaries land in target/<triple>/release/outpost-agent.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)

need_pkgs=()
for t in "${targets[@]}"; do
  case "$t" in
    aarch64-unknown-linux-musl) gcc=aarch64-linux-gnu-gcc; pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
    armv7-unknown-linux-gnueabihf) gcc=arm-linux-gnueabihf-gcc; pkgs=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) ;;
    *) echo "cross/build.sh: unknown target $t (known: aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)" >&2; exit 2 ;;
  esac
  command -v "$gcc" >/dev/null || need_pkgs+=("${pkgs[@]}")
done
command -v qemu-aarch64-static >/dev/null && command -v qemu-arm-static >/dev/null || need_pkgs+=(qemu-user-static)
# `file` checks below that each result is statically linked.
command -v file >/dev/null || need_pkgs+=(file)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  # As scripts/setup-debian does: apt-get as root, else through sudo.
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
      echo "cross/build.sh: ${need_pkgs[*]} must be installed and this is not root and has no sudo:" \
        "run as root: apt-get install -y ${need_pkgs[*]}" >&2
      exit 1
    }
    sudo=(sudo)
  fi
  echo "cross/build.sh: installing ${need_pkgs[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

for t in "${targets[@]}"; do
  case "$t" in
    aarch64-unknown-linux-musl)
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
      export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar
      qemu=(qemu-aarch64-static) ;;
    armv7-unknown-linux-gnueabihf)
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="-C target-feature=+crt-static"
      export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
      # Static, but keep the loader path right should a dynamic build ever slip through (-L hangs threaded programs).
      qemu=(qemu-arm-static -E LD_LIBRARY_PATH=/usr/arm-linux-gnueabihf/lib) ;;
  esac
  echo "== building outpost-agent for $t"
  cargo build --locked --release -p outpost-agent --bin outpost-agent --target "$t"
  bin="${CARGO_TARGET_DIR:-target}/$t/release/outpost-agent"
  if ! file "$bin" | grep -q 'statically linked\|static-pie linked'; then
    echo "cross/build.sh: $bin is not statically linked: $(file -b "$bin")" >&2
    exit 1
  fi
  version=$("${qemu[@]}" "$bin" --version)
  echo "$t: $version ($(stat -c %s "$bin") bytes, $(file -b "$bin" | cut -d, -f1-2))"
done
