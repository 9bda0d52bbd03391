#!/usr/bin/env bash
# Makes sure a Docker daemon answers, for `make test-kubeflow` and kubeflow/README.md.
#
#   kubeflow/ensure_docker.sh
#
# - If `docker info` already works, does nothing else.
# - Otherwise, as root: installs Debian's docker.io and debootstrap when they are missing
#   (`apt-get update` first), starts `dockerd` in the background (log: $DOCKERD_LOG, default
#   /var/log/dockerd.log) and waits up to 60 s for it to answer.
# - debootstrap is checked too: kubeflow/make_base_image.sh needs it.
#
# Debian 12 has no buildx plugin, so this daemon builds with the classic builder; the project's
# Dockerfile needs nothing more (see kubeflow/README.md).
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if ((${#need[@]})); then
    if [ "$(id -u)" != 0 ]; then
        echo "ensure_docker: ${need[*]} missing and not root: install them first" >&2
        exit 1
    fi
    echo "ensure_docker: installing ${need[*]} from the Debian archive"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
    echo "ensure_docker: a Docker daemon answers ($(docker version --format '{{.Server.Version}}'))"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ensure_docker: no Docker daemon answers and not root: start one first" >&2
    exit 1
fi
echo "ensure_docker: starting dockerd (log: $DOCKERD_LOG)"
nohup dockerd >"$DOCKERD_LOG" 2>&1 &
for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        echo "ensure_docker: dockerd $(docker version --format '{{.Server.Version}}') answers"
        exit 0
    fi
    sleep 1
done
echo "ensure_docker: dockerd did not answer within 60 s; last lines of $DOCKERD_LOG:" >&2
tail -n 20 "$DOCKERD_LOG" >&2
exit 1
