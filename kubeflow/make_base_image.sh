#!/usr/bin/env bash
# Makes the base image of kubeflow/Dockerfile from a Debian mirror, for machines that reach no
# container registry (Docker Hub included): debootstrap + `docker import`.
#
#   kubeflow/make_base_image.sh [TAG]      # default TAG: resnet-ablation-base:bookworm
#   docker build -f kubeflow/Dockerfile --build-arg BASE_IMAGE=resnet-ablation-base:bookworm ...
#
# The result is equivalent to python:3.11-slim-bookworm for this project: Debian 12, Python
# 3.11 (Debian's, with venv, pip and the headers pyfarmhash builds against), g++ and make.
# Environment:
#   MIRROR      the Debian mirror (default: the first deb.debian.org-style URI apt uses here,
#               else http://deb.debian.org/debian)
#   CA_BUNDLE   a CA bundle copied into the image and named by SSL_CERT_FILE, PIP_CERT and
#               REQUESTS_CA_BUNDLE (default: this machine's /etc/ssl/certs/ca-certificates.crt,
#               so a TLS-inspecting proxy trusted here is trusted in the build too)
#   PIP_CONF    a pip.conf copied to /etc/pip.conf (default: this machine's, if any)
#   FORCE=1     rebuild even if TAG exists
# An existing TAG is reused (about 1.5 min and 490 MB to make; needs root and debootstrap).
set -euo pipefail

TAG=${1:-resnet-ablation-base:bookworm}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PIP_CONF=${PIP_CONF:-/etc/pip.conf}
PACKAGES=python3,python3-venv,python3-pip,python3-dev,python-is-python3,ca-certificates,g++,make

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "make_base_image: $TAG exists ($(docker image inspect -f '{{.Id}}' "$TAG" | cut -c8-19)); FORCE=1 rebuilds it"
    exit 0
fi
if [ -z "${MIRROR:-}" ]; then
    MIRROR=$( (grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
                  /etc/apt/sources.list.d/ 2>/dev/null || true) \
              | awk '{print $2}' | head -n 1)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
command -v debootstrap >/dev/null || { echo "make_base_image: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }

ROOTFS=$(mktemp -d /tmp/resnet-ablation-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
echo "make_base_image: debootstrap bookworm from $MIRROR (about 1.5 min)"
start=$SECONDS
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
    || { tail -n 30 "$ROOTFS.log" >&2; exit 1; }
rm -f "$ROOTFS.log"
if [ -f "$CA_BUNDLE" ]; then
    cp "$CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
if [ -f "$PIP_CONF" ]; then
    cp "$PIP_CONF" "$ROOTFS/etc/pip.conf"
fi
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb
CERTS=/etc/ssl/certs/ca-certificates.crt
tar -C "$ROOTFS" -c . | docker import \
    -c "ENV SSL_CERT_FILE=$CERTS PIP_CERT=$CERTS REQUESTS_CA_BUNDLE=$CERTS LANG=C.UTF-8" \
    -c 'CMD ["python3"]' \
    -m "debootstrap bookworm ($MIRROR) by kubeflow/make_base_image.sh" - "$TAG" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$TAG")
echo "make_base_image: $TAG in $((SECONDS - start)) s, $((size / 1000000)) MB"
