#!/bin/bash
# A local base image for the Containerfile, made with Debian's own tools, for machines that can reach Debian's
# package archive but no container registry:
#   container/make-base.sh [TAG]        (as root; needs mmdebstrap and podman: apt-get install mmdebstrap podman)
#   podman build --build-arg BASE=localhost/ml-connector-base:bookworm -t ml-connector -f Containerfile .
# Debian 12 (bookworm) ships Python 3.11, what the package needs; SUITE and MIRROR may be set.
# In a sandboxed host without cgroup controllers or CAP_SYS_RESOURCE (a CI VM), build with --isolation=chroot
# (plus -v /etc/ssl/certs:/etc/ssl/certs:ro -v /etc/pip.conf:/etc/pip.conf:ro where pip goes through a proxy with
# its own CA), and run with --runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096.
set -euo pipefail

TAG=${1:-localhost/ml-connector-base:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# minbase: only what apt needs; plus Python with venv and pip's certificates, and useradd for the non-root user.
# Documentation and locales are left out to keep the image small.
mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  --format=tar "$SUITE" - "$MIRROR" \
  | podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$TAG"
echo "base image: $TAG"
