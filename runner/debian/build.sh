#!/usr/bin/env bash
# Build the lian runner image from Debian packages alone (no registry pull needed).
#
#   runner/debian/build.sh [--arch ARCH] [TAG]
#
# TAG defaults to $LIAN_RUNNER_TAG or lian-runner:debian (lian-runner:debian-ARCH for
# a foreign ARCH). ARCH is a Debian architecture (amd64, arm64; default: the host's);
# a foreign one runs under qemu-user with binfmt_misc enabled (QEMU 8.1 or newer: older
# ones cannot re-execute /proc/self/exe) and gets emulation-shim.c, built with the
# cross compiler (Debian's gcc-aarch64-linux-gnu for arm64), preloaded. Environment:
#   LIAN_DEBIAN_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   LIAN_DEBIAN_SUITE   Debian suite (default trixie; bookworm is kept as an option,
#                       but its buildah 1.28 misses the remote cache after an ARG
#                       step and honours only the last --cache-from)
#   LIAN_DEBIAN_ARCH    Debian architecture (same as --arch)
#   DOCKER              docker CLI to import with (default: docker on PATH)
# The image carries the label lian.recipe=<sha256 of this script>-<suite>, so callers
# can tell an image made by an older recipe and rebuild it.
# Needs root (debootstrap), debootstrap and a running Docker engine. Re-running
# rebuilds and re-tags the image; nothing else is left behind.
set -euo pipefail

host_arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
arch="${LIAN_DEBIAN_ARCH:-$host_arch}"
if [[ "${1:-}" == "--arch" ]]; then
    arch="${2:?--arch needs a Debian architecture}"
    shift 2
fi
default_tag="lian-runner:debian"
if [[ "$arch" != "$host_arch" ]]; then default_tag="lian-runner:debian-$arch"; fi
tag="${1:-${LIAN_RUNNER_TAG:-$default_tag}}"
mirror="${LIAN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite="${LIAN_DEBIAN_SUITE:-trixie}"
docker_cli="${DOCKER:-docker}"
packages="openssh-server,rsync,buildah,runc,ca-certificates,procps,busybox-static"
case "$suite" in
    # buildah up to 1.28 configures networks through CNI; later releases use netavark.
    bookworm | bullseye) packages="$packages,containernetworking-plugins" ;;
    *) packages="$packages,netavark,aardvark-dns" ;;
esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shim_source="$here/emulation-shim.c"
recipe="$(cat "${BASH_SOURCE[0]}" "$shim_source" | sha256sum | cut -c1-16)-$suite"

log() { printf 'runner-image: %s\n' "$*" >&2; }

if [[ "$(id -u)" -ne 0 ]]; then
    log "debootstrap needs root: run this script as root"
    exit 1
fi
tools=(debootstrap tar "$docker_cli")
cross_cc=""
if [[ "$arch" != "$host_arch" ]]; then
    case "$arch" in
        arm64) cross_cc="aarch64-linux-gnu-gcc" ;;
        *) log "no emulation shim recipe for $arch (only arm64)"; exit 1 ;;
    esac
    tools+=("$cross_cc")
fi
for tool in "${tools[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "missing tool: $tool"
        exit 1
    fi
done

workdir="$(mktemp -d "${TMPDIR:-/tmp}/lian-runner.XXXXXX")"
cleanup() { rm -rf --one-file-system "$workdir"; }
trap cleanup EXIT
rootfs="$workdir/rootfs"

log "debootstrap $suite ($arch) from $mirror into a temporary root"
debootstrap --arch="$arch" --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >&2

log "configuring sshd and buildah"
# Host keys are injected per runner; none may be baked into a shared image.
rm -f "$rootfs"/etc/ssh/ssh_host_*
mkdir -p "$rootfs/run/sshd" "$rootfs/etc/ssh/sshd_config.d" "$rootfs/etc/containers"
cat >"$rootfs/etc/ssh/sshd_config.d/lian.conf" <<'CONF'
# Keys only; no PAM or reverse DNS on the login path (both slow in containers).
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
UseDNS no
PrintMotd no
CONF
# overlay-on-overlay needs fuse; vfs always works inside a container.
cat >"$rootfs/etc/containers/storage.conf" <<'CONF'
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
if [[ -n "$cross_cc" ]]; then
    log "preloading the emulation shim (RUN steps under qemu-user)"
    mkdir -p "$rootfs/usr/local/lib/lian"
    "$cross_cc" -O2 -shared -fPIC -o "$rootfs/usr/local/lib/lian/emulation-shim.so" "$shim_source"
    echo /usr/local/lib/lian/emulation-shim.so >"$rootfs/etc/ld.so.preload"
fi
# Keep the image small: package caches and lists are not needed at run time.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/*.log "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*

log "importing as $tag"
tar --numeric-owner -C "$rootfs" -c . | "$docker_cli" import \
    --change 'ENV BUILDAH_ISOLATION=chroot' \
    --change "LABEL lian.recipe=$recipe" \
    --change 'CMD ["/bin/sh", "-c", "ssh-keygen -A && exec /usr/sbin/sshd -D -e"]' \
    - "$tag" >&2
log "done: $tag"
