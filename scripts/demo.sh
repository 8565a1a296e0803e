#!/usr/bin/env bash
# The README's first command: the main job on the bundled sample. Starts a throw-away registry on
# 127.0.0.1, shows what the archive holds, pushes it with layerlift, and reads it back with skopeo.
# Installs the Debian packages it needs when run as root (scripts/install-test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
archive=${1:-samples/sample-docker-archive.tar}

if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        scripts/install-test-deps.sh
    else
        echo "demo: needs docker-registry and skopeo: sudo scripts/install-test-deps.sh" >&2
        exit 1
    fi
fi

# The dev profile: it shares its build with the test suite and compiles faster; the sample is tiny.
# A first build compiles ~170 crates (a few minutes on a small machine): cargo shows its progress.
echo "==> building layerlift (cargo build --locked -p layerlift)" >&2
cargo build --locked -p layerlift
bin=${CARGO_TARGET_DIR:-target}/debug

work=$(mktemp -d)
registry_pid=
cleanup() {
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/storage"
cat >"$work/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "==> layerlift unpack --list $archive" >&2
"$bin/layerlift" unpack --list "$archive"

echo "==> layerlift push --all $archive 127.0.0.1:$port/demo" >&2
"$bin/layerlift" push --all "$archive" "127.0.0.1:$port/demo"

pushed="docker://127.0.0.1:$port/demo/bazel/v1/tarball:test_image_3"
echo "==> skopeo reads it back" >&2
skopeo inspect --tls-verify=false "$pushed" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print("digest", d["Digest"]); print("layers", *d["Layers"], sep="\n  ")'

# The same image in the archive and in the registry, side by side.
echo "==> the archive's digests and the registry's" >&2
"$bin/layerlift" unpack --list --json "$archive" >"$work/list.json"
skopeo inspect --tls-verify=false --raw "$pushed" >"$work/manifest.json"
python3 - "$work/list.json" "$work/manifest.json" <<'PY'
import json, sys
listing, pushed = (json.load(open(p)) for p in sys.argv[1:3])
image = next(i for i in listing["images"] if any(n.endswith(":test_image_3") for n in i["names"]))
local = image["manifests"][0]
print("layers in the archive (uncompressed tars; digest = diff_id):")
for layer in local["layers"]:
    print("  ", layer["descriptor"]["digest"])
print("layers in the registry (compressed by push, as registries store and serve them):")
for layer in pushed["layers"]:
    print("  ", layer["digest"], layer["mediaType"].rsplit(".", 1)[-1])
same = local["config"]["digest"] == pushed["config"]["digest"]
print("image ID (the config's digest): archive", local["config"]["digest"])
print("                                registry", pushed["config"]["digest"], "(same)" if same else "(DIFFERENT)")
print("""
docker save stores each layer as a plain tar, named by its diff_id. push compresses layers for the
registry (gzip by default, --compression), so the registry's layer digests name the compressed
bytes and differ. The config, which lists the uncompressed diff_ids, is pushed byte for byte, so its
digest, the image ID, is the same: `docker pull` gives back the image `docker save` wrote.""")
sys.exit(0 if same else 1)
PY
