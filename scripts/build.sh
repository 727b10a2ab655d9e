#!/usr/bin/env bash
# scripts/build.sh DIR [CMAKE_ARGS...]
# Configures DIR with Ninja on first use (ccache is picked up by CMakeLists.txt) and builds it.
# PORTICO_TARGETS limits what is built (default: everything); PORTICO_JOBS caps parallel jobs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if (($# < 1)); then
    echo "usage: scripts/build.sh DIR [CMAKE_ARGS...]" >&2
    exit 2
fi
dir=$1
shift

# An existing tree keeps its generator: CMake refuses to switch generators in place.
generator=()
if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    generator=(-G Ninja)
fi
cmake -S . -B "$dir" "${generator[@]}" "$@"

targets=()
for target in ${PORTICO_TARGETS:-}; do
    targets+=(--target "$target")
done
cmake --build "$dir" --parallel "${PORTICO_JOBS:-$(nproc)}" "${targets[@]}"
