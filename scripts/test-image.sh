#!/usr/bin/env bash
# Build the Dockerfile with podman and run the image (tests/test_image.py): --demo serves
# /metrics, the process is not root, HEALTHCHECK passes while it serves and fails once it
# stops, a mounted config with keys from an environment variable and from a file works,
# and a change to the code reuses the dependencies' layer.
#
# Runs as root (rootful podman) and installs what it needs with apt-get. Where no
# registry can be pulled from, the Dockerfile's FROM image is replaced by a local
# stand-in made from Debian's packages (Python 3.11 instead of 3.12; see docs/container.md),
# made once and kept in $CACHE. Set TEST_IMAGE_BASE=pull to use the real base instead.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=localhost/anthropic-work-exporter:test
BASE=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | head -n 1)
CACHE=${TEST_IMAGE_CACHE:-/var/cache/anthropic-work-exporter}

if [ "$(id -u)" != 0 ]; then
  echo "test-image: needs root (rootful podman); skipped" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 0
fi
if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v runc >/dev/null; then
  echo "test-image: installing podman"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc mmdebstrap uidmap containernetworking-plugins netavark aardvark-dns conmon \
    catatonit fuse-overlayfs slirp4netns >/dev/null
fi

# This kernel needs runc (crun: "cgroups in hybrid mode not supported") and explicit ulimits.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$work/containers.conf"

if [ "${TEST_IMAGE_BASE:-}" = pull ]; then
  podman pull "$BASE"
elif ! podman image exists "$BASE"; then
  mkdir -p "$CACHE"
  if [ ! -s "$CACHE/base.tar" ]; then
    echo "test-image: making a stand-in for $BASE from Debian's packages (a few minutes, once)"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
      --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' bookworm "$CACHE/base.part.tar"
    mv "$CACHE/base.part.tar" "$CACHE/base.tar"  # the name ends in .tar: mmdebstrap picks the format by it
  fi
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$CACHE/base.tar" "$BASE" >/dev/null
fi

# --format docker keeps HEALTHCHECK (OCI drops it). pip inside the build trusts what the
# host trusts (a TLS-inspecting proxy's CA, where there is one); nothing of it stays in the image.
build=(podman build --format docker --pull=never)
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  build+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi
echo "test-image: building $IMAGE"
"${build[@]}" -t "$IMAGE" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }

# The same build with one line of code changed: the dependencies' layers must come from cache.
# The line is new on every run: podman keeps its build cache across runs, and a change it has
# seen before would be taken from cache too, which is not what this checks.
mkdir "$work/context"
# What goes in is what .dockerignore lets in (its "!" lines), so the two cannot drift apart.
mapfile -t allowed < <(sed -n 's|^!\([^*]*\)/\?$|\1|p' .dockerignore)
git ls-files -z -- Dockerfile .dockerignore "${allowed[@]}" | xargs -0 cp --parents -t "$work/context"
echo "# a change, $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >>"$work/context/exporter/__init__.py"
"${build[@]}" -t "$IMAGE-changed" "$work/context" >"$work/rebuild.log" 2>&1 || { cat "$work/rebuild.log"; exit 1; }
podman rmi "$IMAGE-changed" >/dev/null

PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python  # where scripts/test.sh made one
TEST_IMAGE="$IMAGE" TEST_IMAGE_REBUILD_LOG="$work/rebuild.log" \
  "$PY" -m pytest -q -p no:cacheprovider tests/test_image.py
