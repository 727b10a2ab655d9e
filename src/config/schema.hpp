#pragma once

// The configuration schema (SPEC.md "Configuration"): walks the top-level mapping, checks
// every key and value, and fills a `config`.

#include "config/reader.hpp"
#include "portico/config/config.hpp"

namespace portico::config::detail {

/**
 * Reads a top-level mapping. Every problem goes to `ctx`; the returned value is only
 * meaningful when `ctx` has no errors. `source` is left for the caller to set.
 */
config read_config(context& ctx, const node& root);

} // namespace portico::config::detail
