#pragma once

// The parsed YAML tree the schema reads, independent of the parser that built it: libyaml
// for an ordinary file, yaml-cpp for one that needs its diagnostics (see loader.cpp).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace portico::config::detail {

/// Where a node starts: 0-based line, byte column and byte offset; `line < 0` when unknown.
struct text_mark {
    int line = -1;
    int column = -1;
    int pos = -1;

    /// True for a node with no position (yaml-cpp's null mark).
    bool is_null() const noexcept { return line < 0; }
};

/// One YAML value with its position.
struct node {
    /// `null` is an empty value or a plain `~`, `null`, `Null` or `NULL` (YAML 1.2 core).
    enum class kind : std::uint8_t { null, scalar, sequence, mapping };

    kind type = kind::null;
    text_mark mark;
    std::string text;           ///< a scalar's value
    std::vector<node> children; ///< list items; for a mapping key, value, key, value...

    bool is_null() const noexcept { return type == kind::null; }
    bool is_scalar() const noexcept { return type == kind::scalar; }
    bool is_sequence() const noexcept { return type == kind::sequence; }
    bool is_mapping() const noexcept { return type == kind::mapping; }
    /// Key/value pairs of a mapping.
    std::size_t pair_count() const noexcept { return children.size() / 2; }
    const node& key(std::size_t i) const { return children[2 * i]; }
    const node& value(std::size_t i) const { return children[2 * i + 1]; }
};

} // namespace portico::config::detail
