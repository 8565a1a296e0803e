#!/usr/bin/env bash
# Install what the test suite and `cargo xtask fixtures` need on Debian 12 (bookworm), as root.
#
# Idempotent: when every tool is already on PATH this only checks and exits (no apt-get at all).
# Everything comes from Debian packages; nothing is downloaded from elsewhere.
#
#   skopeo           cross-checks (`skopeo inspect`, `skopeo copy`) and fixture generation
#   umoci            builds an OCI layout for fixtures; `umoci stat` accepts/rejects our layouts
#   docker-registry  the distribution registry (`docker-registry serve CONFIG`), started by the
#                    tests themselves on 127.0.0.1; the package's own service is never started here
#   pigz gzip zstd xz-utils bzip2   outer compressions of fixture archives
#   tar              GNU tar, the baseline of `cargo xtask bench`
#   busybox-static   a static /bin/busybox: the whole rootfs of the images the Docker tests build
#                    `FROM scratch` (the daemon has no images and cannot pull any)
#   strace           the durability test watches unpack's fsyncs and renames (tests/e2e/crash.rs)
#   podman           `podman load` of layerlift-pack's archives (tests/e2e/pack.rs); as root it
#                    needs no set-up for load (its own storage under /var/lib/containers)
#   ca-certificates  so that skopeo/cargo keep working over TLS on a minimal image
#
# Usage: scripts/install-test-deps.sh [--check]   (--check: report what is missing, exit 1 if any)
#        scripts/install-test-deps.sh --fuzz      only what `cargo xtask fuzz` needs: the nightly
#                                                 toolchain (rustup) and cargo-fuzz (crates.io)
set -euo pipefail

if [ "${1:-}" = "--fuzz" ]; then
    if ! cargo +nightly --version >/dev/null 2>&1; then
        echo "install-test-deps: installing the nightly toolchain"
        rustup toolchain install nightly --profile minimal
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "install-test-deps: installing cargo-fuzz"
        cargo install cargo-fuzz --locked
    fi
    echo "install-test-deps: $(cargo +nightly --version), $(cargo fuzz --version)"
    exit 0
fi

# command on PATH -> Debian package that provides it
tools=(
    "skopeo:skopeo"
    "umoci:umoci"
    "docker-registry:docker-registry"
    "pigz:pigz"
    "gzip:gzip"
    "zstd:zstd"
    "xz:xz-utils"
    "bzip2:bzip2"
    "tar:tar"
    "busybox:busybox-static"
    "strace:strace"
    "make:make"
    "podman:podman"
)

missing=()
for pair in "${tools[@]}"; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    if ! command -v "$cmd" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done
# skopeo reads /etc/containers/policy.json unless --insecure-policy; it comes with
# golang-github-containers-common (a dependency of skopeo), but check it anyway.
if command -v skopeo >/dev/null 2>&1 && [ ! -e /etc/containers/policy.json ]; then
    missing+=("golang-github-containers-common")
fi
if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then
    missing+=("ca-certificates")
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-test-deps: all tools present (skopeo, umoci, docker-registry, pigz, gzip, zstd, xz, bzip2, tar, busybox, strace, make, podman)"
    exit 0
fi

if [ "${1:-}" = "--check" ]; then
    echo "install-test-deps: missing packages: ${missing[*]}" >&2
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing packages: ${missing[*]}" >&2
    echo "install-test-deps: run as root, or: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: no apt-get here; install these by hand: ${missing[*]}" >&2
    exit 1
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# docker-registry's maintainer scripts start its service (init script or systemd unit). The tests run
# their own registry on 127.0.0.1 with a random port, so keep package scripts from starting anything:
# a temporary policy-rc.d answering 101 ("action forbidden") unless one is already in place.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from layerlift scripts/install-test-deps.sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" = 1 ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null

# Some environments (systemd without policy-rc.d support) may still have started the service; it
# listens on :5000, which the tests never use, so it is harmless. Say so rather than stopping it.
if command -v docker-registry >/dev/null 2>&1; then
    echo "install-test-deps: docker-registry installed; tests start their own instance on 127.0.0.1"
fi
echo "install-test-deps: done"
