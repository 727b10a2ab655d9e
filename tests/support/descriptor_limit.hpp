#pragma once

// A process out of descriptors, as a proxy is when its clients have taken all its limit
// allows: this test process for a while, or a portico the test started.

#include <gtest/gtest.h>

#include <sys/resource.h>

#if defined(PORTICO_SANITIZE)
/// UBSan's vptr check probes memory through a pipe: with no descriptor left it cannot make
/// one and reports a valid object as invalid. A test that leaves a sanitized process (itself
/// or a portico it started) without descriptors skips itself with this.
#define PORTICO_SKIP_IF_SANITIZED_OUT_OF_DESCRIPTORS()                                             \
    GTEST_SKIP() << "the sanitizer runtime needs descriptors of its own"
#else
#define PORTICO_SKIP_IF_SANITIZED_OUT_OF_DESCRIPTORS() static_cast<void>(0)
#endif

namespace portico::test {

/// Lowers this process's soft descriptor limit to its lowest free descriptor, so that no new
/// one can be made (EMFILE), until destroyed; those open already stay usable.
class out_of_descriptors {
public:
    out_of_descriptors();
    ~out_of_descriptors();
    out_of_descriptors(const out_of_descriptors&) = delete;
    out_of_descriptors& operator=(const out_of_descriptors&) = delete;

private:
    rlimit saved_{};
};

} // namespace portico::test
