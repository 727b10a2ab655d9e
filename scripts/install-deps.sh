#!/usr/bin/env bash
# Installs the Debian 12 packages portico builds and tests with. Idempotent: when every
# package is already installed it changes nothing and needs no network or root.
set -euo pipefail

packages=(
    build-essential cmake ninja-build ccache pkg-config
    lld-16         # links portico with its code in cmake/link-order.txt's order (decision 0011)
    libboost1.81-dev libssl-dev libyaml-cpp-dev libyaml-dev libcli11-dev libfmt-dev
    liburing-dev   # sends gathered per turn of a worker's loop (decision 0020)
    googletest libgtest-dev libbenchmark-dev
    curl python3 ca-certificates
    libnss3-tools  # certutil: NSS databases for `portico ca install` and its tests
    chromium       # headless browser test: tests/integration/browser_test.cpp
    testssl.sh     # the TLS scan in docs/testssl.md (command: testssl)
)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#packages[@]} packages are installed"
    exit 0
fi

if ((EUID == 0)); then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-deps: missing packages: ${missing[*]}" >&2
    echo "install-deps: run this script as root (sudo is not available)" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
# env, not export: sudo does not pass the caller's environment on.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
