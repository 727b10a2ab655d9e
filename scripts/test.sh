#!/usr/bin/env bash
# Builds portico and runs every test twice: a Release tree in build/, then a Debug tree with
# AddressSanitizer and UndefinedBehaviorSanitizer in build-asan/. Stops at the first failing
# stage; the last lines printed are always the summary of the ctest run that decided.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# No label timing table: the "N% tests passed" summary stays at the end of the output.
ctest_args=(--output-on-failure -j2 --timeout 300 --no-label-summary)

scripts/install-deps.sh

echo "==> Release build (build/)"
scripts/build.sh build -DCMAKE_BUILD_TYPE=Release
echo "==> Release tests"
ctest --test-dir build "${ctest_args[@]}"

echo "==> Sanitizer build (build-asan/: Debug, ASan + UBSan)"
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DPORTICO_SANITIZE=ON \
    -DPORTICO_BUILD_BENCHMARKS=OFF
echo "==> Release tests passed; sanitizer tests"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan "${ctest_args[@]}"
