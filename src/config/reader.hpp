#pragma once

// YAML access for the loader: 1-based positions from node marks, the diagnostics being
// collected, and typed reads that report what was expected at the right place. Private to
// src/config.

#include "config/node.hpp"
#include "portico/config/config.hpp"

#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::config::detail {

/// The text being loaded, for turning byte offsets and node marks into positions.
class source_text {
public:
    /// `text` must outlive this object.
    source_text(std::string file, std::string_view text);

    /// The file as named to the user.
    const std::string& file() const noexcept { return file_.str(); }
    /// The text, without a byte order mark.
    std::string_view text() const noexcept { return text_; }
    /// Number of lines (a final line without '\n' counts).
    std::size_t line_count() const noexcept { return line_starts_.size(); }
    /// Line `index` (0-based) without its '\n'.
    std::string_view line(std::size_t index) const;

    /// Where a problem with the whole file is reported: its start, so that the message has the
    /// `file:line:col` form of every other (editors and scripts that jump to it need one).
    source_location whole_file() const { return {file_, 1, 1}; }
    /// The 1-based position of a byte offset; columns count UTF-8 characters, as editors do.
    source_location at_offset(std::size_t offset) const;
    /// The position of a mark (0-based line and byte column).
    source_location at(const text_mark& mark) const;
    /// The byte offset where 0-based line `index` starts.
    std::size_t line_start(std::size_t index) const { return line_starts_[index]; }

private:
    source_location at_line_byte(std::size_t line, std::size_t byte_column) const;

    file_name file_;
    std::string_view text_;
    std::vector<std::size_t> line_starts_;
};

/// Diagnostics and settings shared by every read of one file.
class context {
public:
    /**
     * @param base_dir directory that relative paths in the file resolve against
     * @note `source` and `env` must outlive the context.
     */
    context(const source_text& source, const environment& env, std::filesystem::path base_dir);

    /// The text being read.
    const source_text& source() const noexcept { return source_; }
    /// The environment for `~` and `${VAR}`.
    const environment& env() const noexcept { return env_; }
    /// Where relative paths resolve.
    const std::filesystem::path& base_dir() const noexcept { return base_dir_; }

    /// The position of a node.
    source_location at(const node& n) const { return source_.at(n.mark); }

    /// Records an error.
    void error(source_location where, std::string message);
    /// Records a warning.
    void warning(source_location where, std::string message);
    /// True once any error was recorded.
    bool has_errors() const noexcept { return !errors_.empty(); }

    /// The outcome: errors and warnings in file order, `cfg` kept only without errors.
    load_result finish(config cfg);

private:
    const source_text& source_;
    const environment& env_;
    std::filesystem::path base_dir_;
    std::vector<diagnostic> errors_;
    std::vector<diagnostic> warnings_;
};

/// A value in the file with the positions messages point at.
struct entry {
    const node* value;        ///< in the tree being read, which outlives every entry
    source_location key_at;   ///< the key; for a list item or the root, the item itself
    source_location value_at; ///< the value; the key when the value is empty (yaml-cpp
                              ///< marks an empty value at the next token, lines below)
};

/// An entry for a list item or the document root.
entry make_item(const context& ctx, const node& n);

/// "a list", "a mapping", "empty" or "a value", for "must be X, not Y" messages.
std::string_view kind_of(const node& n);

/// "prefix'name'", the subject of a message about a key.
std::string subject_of(std::string_view prefix, std::string_view name);

/// A scalar's text; otherwise reports "<subject> must be <expected>, not <kind>".
std::optional<std::string> read_scalar(context& ctx, const entry& e, std::string_view subject,
                                       std::string_view expected);

/// `true` or `false` only (not YAML 1.1's yes/no/on/off), so a typo cannot flip a setting.
std::optional<bool> read_bool(context& ctx, const entry& e, std::string_view subject);

/// A duration (see `parse_duration`); zero is refused unless `allow_zero`.
std::optional<std::chrono::milliseconds> read_duration(context& ctx, const entry& e,
                                                       std::string_view subject, bool allow_zero);

/// A size in bytes (see `parse_size`).
std::optional<std::uint64_t> read_size(context& ctx, const entry& e, std::string_view subject);

/// A list's items; an empty value is an empty list.
std::optional<std::vector<entry>> read_list(context& ctx, const entry& e, std::string_view subject,
                                            std::string_view expected);

/// How to read one mapping and word its messages.
struct mapping_spec {
    std::span<const std::string_view> keys; ///< known keys; empty accepts any key
    std::string_view prefix;                ///< "route 2: ", or "" at the top level
    std::string_view name;                  ///< "timeouts", "headers.request"; "" for an entry
    std::string_view expected;              ///< "a mapping with 'host' and 'to'"
    bool empty_is_mapping = true;           ///< `key:` with no value means an empty section
};

/// A mapping whose keys were checked: unknown, duplicate and non-scalar keys are reported.
class mapping {
public:
    /// Reads `e` as a mapping; nullopt (after reporting) when it is not one.
    static std::optional<mapping> read(context& ctx, const entry& e, const mapping_spec& spec);

    /// The first occurrence of `key`, or nullptr.
    const entry* find(std::string_view key) const;
    /// Every key (first occurrences) in file order.
    const std::vector<std::pair<std::string, entry>>& entries() const noexcept { return entries_; }
    /// The mapping itself, for "'x' is required" messages.
    const source_location& where() const noexcept { return where_; }

private:
    std::vector<std::pair<std::string, entry>> entries_;
    source_location where_;
};

} // namespace portico::config::detail
