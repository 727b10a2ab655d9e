#pragma once

// This test process out of descriptors for a while, as a proxy is when its clients have
// taken all its limit allows.

#include <sys/resource.h>

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
