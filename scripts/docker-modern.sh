#!/usr/bin/env bash
# A modern Docker Engine (Debian 13's docker.io 26.x, docker-buildx, containerd 1.7) beside the
# machine's own daemon, for the tests of what Docker 25+ and BuildKit write (tests/e2e/modern.rs).
#
#   scripts/docker-modern.sh start [--until-exit-of PID]   build the chroot if needed, start both daemons
#   scripts/docker-modern.sh stop [--if-unused]            stop what start started, remove its bridges
#   scripts/docker-modern.sh env vfs|containerd            the DOCKER_HOST and DOCKER_CONFIG to use one
#   scripts/docker-modern.sh status                        which daemons answer
#
# The packages are installed by `debootstrap` into a Debian 13 (trixie) chroot under
# $LAYERLIFT_DOCKER_MODERN_CACHE (default /var/cache/layerlift/docker-modern), from the Debian mirror
# this machine's apt already uses (/etc/apt/sources.list*). The chroot is built into a temporary
# directory and renamed into place, and reused by every later start (30 s to 2 min and about 500 MB
# on a fresh machine with a near mirror). The chroot root is bind-mounted onto itself, with /proc,
# /sys, /dev and a tmpfs /run inside it, and two dockerd run chrooted in it:
#
#   vfs         the classic image store, storage driver vfs (layer tars, image IDs as Docker 20.10)
#   containerd  the containerd image store (features.containerd-snapshotter) with the native snapshotter
#
# Each has its own socket, data root, exec root, pid file, managed containerd (own socket and state
# under its exec root, own namespace) and its own bridge (ll26v0, ll26c0: 10.226.1.1/24, 10.226.2.1/24).
# A second dockerd with "bridge": "none" in the machine's network namespace deletes the machine
# daemon's docker0, so each names a bridge of its own. Neither touches iptables, IP forwarding or
# masquerading. Registries on 127.0.0.0/8 are insecure (plain HTTP) for both.
#
# The host's `docker` CLI talks to them (`eval "$(scripts/docker-modern.sh env containerd)"`), with
# the chroot's buildx plugin linked into the DOCKER_CONFIG that `env` names.
#
# `--until-exit-of PID` also starts a watcher that runs `stop --if-unused` when process PID ends (the
# e2e test binary passes its own pid, so that the daemons do not outlive it even when it is killed);
# `--if-unused` stops nothing while another process that started them that way still runs.
# `stop` kills the daemons by their pid files, unmounts the chroot's mounts, removes the data roots
# and the bridges, and checks that docker0 (when the machine has one) is still there.
set -euo pipefail

cache=${LAYERLIFT_DOCKER_MODERN_CACHE:-/var/cache/layerlift/docker-modern}
root=$cache/root
state=${LAYERLIFT_DOCKER_MODERN_STATE:-/run/layerlift-docker-modern}
suite=trixie
packages=docker.io,docker-buildx,containerd,runc,iptables,ca-certificates
modes=(vfs containerd)

say() { echo "docker-modern: $*" >&2; }
die() {
    say "$*"
    exit 1
}

bridge_of() { case $1 in vfs) echo ll26v0 ;; containerd) echo ll26c0 ;; esac }
address_of() { case $1 in vfs) echo 10.226.1.1/24 ;; containerd) echo 10.226.2.1/24 ;; esac }
socket_of() { echo "$root/run/ll26-$1/docker.sock"; }

# The Debian mirror apt uses here: the first deb.debian.org-style URI whose suite is not a security one.
mirror() {
    local uri
    uri=$(
        {
            grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }'
            grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{ for (i = 2; i <= NF; i++) print $i }'
        } | grep -E '/debian/?$' | grep -v -- '-security' | head -n1
    ) || true
    [ -n "$uri" ] || die "no Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d (a line whose URI ends in /debian)"
    echo "${uri%/}"
}

# Unmount whatever is mounted under $1 (debootstrap mounts /proc, and in a container binds /dev, into
# its target; a failed run can leave them there).
unmount_under() {
    local m
    awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    if awk -v p="$1/" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
        die "cannot unmount what is mounted under $1"
    fi
}

# Remove a directory tree, never crossing into another filesystem.
remove_tree() {
    [ -e "$1" ] || return 0
    unmount_under "$1"
    rm -rf --one-file-system "$1"
}

build_chroot() {
    if [ -x "$root/usr/sbin/dockerd" ] && [ -e "$cache/.complete" ]; then
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "building the chroot needs root"
    if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap </dev/null >&2 ||
            { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap </dev/null >&2; } ||
            die "cannot install debootstrap"
    fi
    local url tmp started
    url=$(mirror)
    tmp=$cache/.tmp-root
    mkdir -p "$cache"
    remove_tree "$tmp"
    started=$(date +%s)
    say "building a Debian $suite chroot with $packages from $url into $root (once: 30 s to 2 min, about 500 MB)"
    if ! debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$url" >"$cache/debootstrap.log" 2>&1; then
        tail -n 5 "$cache/debootstrap.log" >&2
        remove_tree "$tmp"
        die "debootstrap $suite from $url failed (log: $cache/debootstrap.log)"
    fi
    unmount_under "$tmp"
    rm -f "$tmp/var/cache/apt/archives/"*.deb
    rm -f "$cache/.complete"
    remove_tree "$root"
    mv "$tmp" "$root"
    date -u +%FT%TZ >"$cache/.complete"
    say "chroot built in $(($(date +%s) - started)) s: $(chroot "$root" dpkg-query -W -f '${Package} ${Version}, ' docker.io docker-buildx containerd runc)"
}

mounted() { mountpoint -q "$1"; }

mount_chroot() {
    if ! mounted "$root"; then
        mount --bind "$root" "$root"
        mount --make-private "$root"
    fi
    mounted "$root/proc" || mount -t proc proc "$root/proc"
    if ! mounted "$root/sys"; then
        mount --rbind /sys "$root/sys"
        mount --make-rslave "$root/sys"
    fi
    if ! mounted "$root/dev"; then
        mount --rbind /dev "$root/dev"
        mount --make-rslave "$root/dev"
    fi
    mounted "$root/run" || mount -t tmpfs -o mode=0755 tmpfs "$root/run"
    mounted "$root/tmp" || mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
}

unmount_chroot() {
    if mounted "$root"; then
        umount -R "$root" 2>/dev/null || umount -R -l "$root"
    fi
}

# A process that runs (a zombie, which nobody may reap when its parent was a subreaper, does not).
alive() {
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

pid_of() {
    local f=$state/$1.pid
    [ -s "$f" ] && alive "$(cat "$f")" && cat "$f"
}

answers() {
    DOCKER_HOST=unix://$(socket_of "$1") DOCKER_CONFIG=$state/docker-config \
        timeout 10 docker version --format '{{.Server.Version}}' 2>/dev/null
}

daemon_json() {
    local mode=$1 snapshotter=false driver=vfs
    if [ "$mode" = containerd ]; then
        snapshotter=true
        driver=native
    fi
    cat <<EOF
{
  "hosts": ["unix:///run/ll26-$mode/docker.sock"],
  "data-root": "/var/lib/ll26-$mode",
  "exec-root": "/run/ll26-$mode/exec",
  "pidfile": "/run/ll26-$mode/docker.pid",
  "containerd-namespace": "ll26-$mode",
  "containerd-plugins-namespace": "ll26-$mode-plugins",
  "storage-driver": "$driver",
  "features": {"containerd-snapshotter": $snapshotter},
  "bridge": "$(bridge_of "$mode")",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "ip-masq": false,
  "userland-proxy": false,
  "cgroup-parent": "/ll26-$mode",
  "insecure-registries": ["127.0.0.0/8"],
  "log-level": "warn"
}
EOF
}

start_daemon() {
    local mode=$1 bridge pid waited=0
    if answers "$mode" >/dev/null; then
        return
    fi
    bridge=$(bridge_of "$mode")
    # The bridge's subnet must be free (no other interface in it: docker0, a VPN, a LAN).
    local taken
    taken=$(ip -o -4 addr show to "$(address_of "$mode")" | awk -v b="$bridge" '$2 != b { print $2 }')
    [ -z "$taken" ] || die "$(address_of "$mode") is already used by $taken: the $mode daemon's bridge needs that subnet"
    if ! ip link show "$bridge" >/dev/null 2>&1; then
        ip link add "$bridge" type bridge
        ip addr add "$(address_of "$mode")" dev "$bridge"
    fi
    ip link set "$bridge" up
    rm -rf --one-file-system "$root/var/lib/ll26-$mode" "$root/run/ll26-$mode"
    mkdir -p "$root/etc/layerlift" "$root/run/ll26-$mode"
    daemon_json "$mode" >"$root/etc/layerlift/$mode.json"
    setsid chroot "$root" /usr/sbin/dockerd --config-file "/etc/layerlift/$mode.json" \
        </dev/null >"$state/$mode.log" 2>&1 &
    pid=$!
    echo "$pid" >"$state/$mode.pid"
    until answers "$mode" >/dev/null; do
        if ! alive "$pid"; then
            tail -n 5 "$state/$mode.log" >&2
            die "dockerd ($mode) exited (log: $state/$mode.log)"
        fi
        if [ "$waited" -ge 60 ]; then
            tail -n 5 "$state/$mode.log" >&2
            die "dockerd ($mode) does not answer on $(socket_of "$mode") after 60 s (log: $state/$mode.log)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

start() {
    [ "$(id -u)" -eq 0 ] || die "start needs root (mounts, bridges, dockerd)"
    command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH (it is the client of these daemons)"
    mkdir -p "$state/docker-config/cli-plugins"
    exec 9>"$state/lock"
    flock 9
    build_chroot
    if ! answers vfs >/dev/null || ! answers containerd >/dev/null; then
        # Start both afresh, after clearing what a killed daemon or an interrupted stop may have
        # left (processes, mounts, data roots, bridges).
        for mode in "${modes[@]}"; do
            stop_daemon "$mode"
        done
        teardown
    fi
    ln -sfn "$root/usr/libexec/docker/cli-plugins/docker-buildx" "$state/docker-config/cli-plugins/docker-buildx"
    [ -e "$state/docker-config/config.json" ] || echo '{}' >"$state/docker-config/config.json"
    mount_chroot
    for mode in "${modes[@]}"; do
        start_daemon "$mode"
    done
    if [ -n "${watch_pid:-}" ]; then
        mkdir -p "$state/users"
        touch "$state/users/$watch_pid"
        # Detached from the caller's pipes (the caller waits for this script's output to end) and
        # from the lock.
        setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" stop --if-unused' \
            watcher "$watch_pid" "$(readlink -f "$0")" </dev/null >>"$state/watcher.log" 2>&1 9>&- &
    fi
    flock -u 9
    for mode in "${modes[@]}"; do
        say "$mode: Docker $(answers "$mode") on unix://$(socket_of "$mode") (bridge $(bridge_of "$mode"))"
    done
}

stop_daemon() {
    local mode=$1 pid waited=0
    if pid=$(pid_of "$mode"); then
        kill -TERM "$pid" 2>/dev/null || true
        while alive "$pid"; do
            if [ "$waited" -ge 30 ]; then
                say "dockerd ($mode, pid $pid) still runs after 30 s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 1
            waited=$((waited + 1))
        done
    fi
    rm -f "$state/$mode.pid"
    # Its managed containerd (and any shim) exits with it; a kill -9 above may leave them.
    local left
    left=$(pgrep -f "/run/ll26-$mode/exec/containerd" || true)
    if [ -n "$left" ]; then
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
    fi
}

# What start set up around the daemons: the chroot's mounts, the data roots, the bridges.
teardown() {
    unmount_chroot
    for mode in "${modes[@]}"; do
        rm -rf --one-file-system "$root/var/lib/ll26-$mode"
        if ip link show "$(bridge_of "$mode")" >/dev/null 2>&1; then
            ip link del "$(bridge_of "$mode")"
        fi
    done
}

stop() {
    [ "$(id -u)" -eq 0 ] || die "stop needs root"
    mkdir -p "$state"
    exec 9>"$state/lock"
    flock 9
    if [ "${1:-}" = --if-unused ]; then
        # Other processes that started the daemons with --until-exit-of and still run keep them.
        local user
        for user in "$state"/users/*; do
            [ -e "$user" ] || continue
            if alive "${user##*/}"; then
                return
            fi
            rm -f "$user"
        done
    fi
    rm -rf "$state/users"
    for mode in "${modes[@]}"; do
        stop_daemon "$mode"
    done
    teardown
    if [ -e "$state/docker0-existed" ] && ! ip link show docker0 >/dev/null 2>&1; then
        die "docker0 is gone (the machine's daemon needs it)"
    fi
    say "stopped"
}

case "${1:-}" in
start)
    shift
    if [ "${1:-}" = "--until-exit-of" ]; then
        watch_pid=${2:?--until-exit-of needs a pid}
    fi
    mkdir -p "$state"
    if ip link show docker0 >/dev/null 2>&1; then touch "$state/docker0-existed"; fi
    start
    ;;
stop) stop "${2:-}" ;;
env)
    case "${2:-}" in
    vfs | containerd) ;;
    *) die "usage: $0 env vfs|containerd" ;;
    esac
    echo "export DOCKER_HOST=unix://$(socket_of "$2")"
    echo "export DOCKER_CONFIG=$state/docker-config"
    ;;
status)
    for mode in "${modes[@]}"; do
        if v=$(answers "$mode"); then echo "$mode: Docker $v"; else echo "$mode: not running"; fi
    done
    ;;
*)
    echo "usage: $0 start [--until-exit-of PID] | stop | env vfs|containerd | status" >&2
    exit 2
    ;;
esac
