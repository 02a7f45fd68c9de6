#!/usr/bin/env bash
# Installs the Debian 12 packages medscreen needs to build, test and fuzz. Idempotent and fast
# when everything is present (one dpkg-query, no network). Installing needs root:
#   sudo scripts/setup-deps.sh
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config
    clang libclang-rt-14-dev
    libpng-dev libjpeg62-turbo-dev libturbojpeg0-dev zlib1g-dev
    libdcmtk-dev dcmtk libopenjp2-7-dev libopenjp2-tools libgdcm-tools
    libopenblas-dev libcmocka-dev
    python3 python3-numpy python3-pydicom python3-pil python3-jsonschema
    chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-deps: all ${#PACKAGES[@]} packages are installed"
    exit 0
fi

echo "setup-deps: missing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-deps: installing needs root; run: sudo $0" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "setup-deps: done"
