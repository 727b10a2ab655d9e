#include "config/reader.hpp"

#include "config/syntax.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <unordered_map>

namespace portico::config::detail {
namespace {

bool is_utf8_continuation(char c) noexcept
{
    return (static_cast<unsigned char>(c) & 0xc0) == 0x80;
}

void sort_by_position(std::vector<diagnostic>& list)
{
    std::stable_sort(list.begin(), list.end(), [](const diagnostic& a, const diagnostic& b) {
        return std::pair(a.where.line, a.where.column) < std::pair(b.where.line, b.where.column);
    });
}

std::string join_keys(std::span<const std::string_view> keys)
{
    return fmt::format("{}", fmt::join(keys, ", "));
}

} // namespace

source_text::source_text(std::string file, std::string_view text)
    : file_(std::move(file)), text_(text)
{
    line_starts_.push_back(0);
    for (std::size_t i = 0; i < text_.size(); ++i) {
        if (text_[i] == '\n' && i + 1 < text_.size()) {
            line_starts_.push_back(i + 1);
        }
    }
}

std::string_view source_text::line(std::size_t index) const
{
    if (index >= line_starts_.size()) {
        return {};
    }
    const auto start = line_starts_[index];
    const auto end = text_.find('\n', start);
    return text_.substr(start,
                        end == std::string_view::npos ? std::string_view::npos : end - start);
}

source_location source_text::at_line_byte(std::size_t line_index, std::size_t byte_column) const
{
    const auto text = line(line_index);
    const auto bytes = text.substr(0, std::min(byte_column, text.size()));
    const auto characters = static_cast<std::size_t>(
        std::count_if(bytes.begin(), bytes.end(), [](char c) { return !is_utf8_continuation(c); }));
    // A mark past the end of the line (at its '\n' or the end of file) keeps its offset.
    const auto beyond = byte_column > text.size() ? byte_column - text.size() : 0;
    return {file_, static_cast<int>(line_index + 1), static_cast<int>(characters + beyond + 1)};
}

source_location source_text::at_offset(std::size_t offset) const
{
    const auto next = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const auto index = static_cast<std::size_t>(next - line_starts_.begin()) - 1;
    return at_line_byte(index, offset - line_starts_[index]);
}

source_location source_text::at(const text_mark& mark) const
{
    if (mark.is_null() || mark.line < 0 || mark.column < 0) {
        return whole_file();
    }
    return at_line_byte(static_cast<std::size_t>(mark.line), static_cast<std::size_t>(mark.column));
}

context::context(const source_text& source, const environment& env, std::filesystem::path base_dir)
    : source_(source), env_(env), base_dir_(std::move(base_dir))
{
}

void context::error(source_location where, std::string message)
{
    errors_.push_back({std::move(where), std::move(message)});
}

void context::warning(source_location where, std::string message)
{
    warnings_.push_back({std::move(where), std::move(message)});
}

load_result context::finish(config cfg)
{
    load_result result;
    sort_by_position(errors_);
    sort_by_position(warnings_);
    if (errors_.empty()) {
        result.value = std::move(cfg);
    }
    result.errors = std::move(errors_);
    result.warnings = std::move(warnings_);
    return result;
}

entry make_item(const context& ctx, const node& n)
{
    auto where = ctx.at(n);
    if (n.is_null() && n.mark.pos > 0) {
        // yaml-cpp marks an empty list item at the next token, often lines below; point at
        // its '-' instead.
        const auto text = ctx.source().text();
        const auto before =
            text.find_last_not_of(" \t\r\n", static_cast<std::size_t>(n.mark.pos) - 1);
        if (before != std::string_view::npos && text[before] == '-') {
            where = ctx.source().at_offset(before);
        }
    }
    return {&n, where, where};
}

std::string_view kind_of(const node& n)
{
    switch (n.type) {
    case node::kind::sequence: return "a list";
    case node::kind::mapping: return "a mapping";
    case node::kind::scalar: return "a value";
    default: return "empty";
    }
}

std::string subject_of(std::string_view prefix, std::string_view name)
{
    // Made for every key read, whether a message needs it or not: appends, not a format.
    std::string subject;
    subject.reserve(prefix.size() + name.size() + 2);
    subject.append(prefix).append(1, '\'').append(name).append(1, '\'');
    return subject;
}

std::optional<std::string> read_scalar(context& ctx, const entry& e, std::string_view subject,
                                       std::string_view expected)
{
    if (!e.value->is_scalar()) {
        ctx.error(e.value_at,
                  fmt::format("{} must be {}, not {}", subject, expected, kind_of(*e.value)));
        return std::nullopt;
    }
    return e.value->text;
}

std::optional<bool> read_bool(context& ctx, const entry& e, std::string_view subject)
{
    constexpr std::string_view expected = "true or false";
    const auto text = read_scalar(ctx, e, subject, expected);
    if (!text) {
        return std::nullopt;
    }
    if (*text == "true" || *text == "false") {
        return *text == "true";
    }
    ctx.error(e.value_at, fmt::format("{} must be {}", subject, expected));
    return std::nullopt;
}

std::optional<std::chrono::milliseconds> read_duration(context& ctx, const entry& e,
                                                       std::string_view subject, bool allow_zero)
{
    constexpr std::string_view expected = "a duration such as 250ms, 30s, 5m or 1h";
    const auto text = read_scalar(ctx, e, subject, expected);
    if (!text) {
        return std::nullopt;
    }
    const auto value = parse_duration(*text);
    // Deadlines are points on a nanosecond clock, which a few centuries overflow into the
    // past: a huge value meant as "never" would time out at once.
    constexpr std::chrono::hours longest{24 * 365};
    const auto too_long = [&] {
        ctx.error(e.value_at, fmt::format("{} must be at most 8760h (a year){}", subject,
                                          allow_zero ? "; 0 means no limit" : ""));
        return std::nullopt;
    };
    if (!value) {
        // Well formed but past what milliseconds hold: too long, not malformed.
        const auto digits = text->find_first_not_of("0123456789");
        // (A format, not "1" + substr: GCC 12's -Wrestrict misfires on that here.)
        if (digits != 0 && digits != std::string::npos &&
            parse_duration(fmt::format("1{}", std::string_view(*text).substr(digits)))) {
            return too_long();
        }
        ctx.error(e.value_at, fmt::format("{} must be {}", subject, expected));
        return std::nullopt;
    }
    if (!allow_zero && value->count() == 0) {
        ctx.error(e.value_at, fmt::format("{} must be greater than 0", subject));
        return std::nullopt;
    }
    if (*value > longest) {
        return too_long();
    }
    return value;
}

std::optional<std::uint64_t> read_size(context& ctx, const entry& e, std::string_view subject)
{
    constexpr std::string_view expected = "a size in bytes such as 65536, 512k, 64KiB or 10MB";
    const auto text = read_scalar(ctx, e, subject, expected);
    if (!text) {
        return std::nullopt;
    }
    const auto value = parse_size(*text);
    if (!value) {
        ctx.error(e.value_at, fmt::format("{} must be {}", subject, expected));
    }
    return value;
}

std::optional<std::vector<entry>> read_list(context& ctx, const entry& e, std::string_view subject,
                                            std::string_view expected)
{
    std::vector<entry> items;
    if (e.value->is_null()) {
        return items;
    }
    if (!e.value->is_sequence()) {
        ctx.error(e.value_at,
                  fmt::format("{} must be {}, not {}", subject, expected, kind_of(*e.value)));
        return std::nullopt;
    }
    items.reserve(e.value->children.size());
    for (const auto& item : e.value->children) {
        items.push_back(make_item(ctx, item));
    }
    return items;
}

std::optional<mapping> mapping::read(context& ctx, const entry& e, const mapping_spec& spec)
{
    if (!e.value->is_mapping() && !(spec.empty_is_mapping && e.value->is_null())) {
        // An entry (route, certificate) has no name of its own: "route 2: must be ...".
        const auto subject =
            spec.name.empty()
                ? std::string(spec.prefix.substr(0, spec.prefix.find_last_not_of(' ') + 1))
                : subject_of(spec.prefix, spec.name);
        ctx.error(e.value_at,
                  fmt::format("{} must be {}, not {}", subject, spec.expected, kind_of(*e.value)));
        return std::nullopt;
    }
    mapping out;
    out.where_ = e.value_at;
    if (e.value->is_null()) {
        return out;
    }
    const auto in = [&spec] {
        return spec.name.empty() ? std::string() : fmt::format(" in '{}'", spec.name);
    };
    // Most mappings hold a handful of keys, where a linear search beats a tree's allocation
    // per key (thousands of routes made that a visible part of loading); a long one (a big
    // header set) gets a hash table.
    constexpr std::size_t linear_keys = 16;
    std::vector<std::pair<std::string_view, int>> few;
    std::unordered_map<std::string_view, int> many;
    const bool is_long = e.value->pair_count() > linear_keys;
    if (!is_long) {
        few.reserve(e.value->pair_count());
    }
    const auto first_line = [&](std::string_view key) -> std::optional<int> {
        if (is_long) {
            const auto found = many.find(key);
            return found == many.end() ? std::nullopt : std::optional<int>(found->second);
        }
        const auto found = std::find_if(few.begin(), few.end(),
                                        [key](const auto& k) { return k.first == key; });
        return found == few.end() ? std::nullopt : std::optional<int>(found->second);
    };
    for (std::size_t i = 0; i < e.value->pair_count(); ++i) {
        const auto& key_node = e.value->key(i);
        const auto& value = e.value->value(i);
        const auto key_at = ctx.at(key_node);
        if (!key_node.is_scalar()) {
            ctx.error(key_at, fmt::format("{}a key must be a name, not {}", spec.prefix,
                                          kind_of(key_node)));
            continue;
        }
        const auto& key = key_node.text;
        // Both parsers keep every occurrence of a repeated key; YAML 1.2 §3.2.1.1 forbids it.
        if (const auto seen = first_line(key)) {
            ctx.error(key_at, fmt::format("{}duplicate key '{}'{} (first at line {})", spec.prefix,
                                          key, in(), *seen));
            continue;
        }
        if (is_long) {
            many.emplace(key, key_at.line);
        } else {
            few.emplace_back(key, key_at.line);
        }
        const bool known = spec.keys.empty() ||
                           std::find(spec.keys.begin(), spec.keys.end(), key) != spec.keys.end();
        if (!known) {
            if (const auto near = suggest(key, spec.keys)) {
                ctx.error(key_at, fmt::format("{}unknown key '{}'{}; did you mean '{}'?",
                                              spec.prefix, key, in(), *near));
            } else {
                ctx.error(key_at, fmt::format("{}unknown key '{}'{}; expected one of {}",
                                              spec.prefix, key, in(), join_keys(spec.keys)));
            }
            continue;
        }
        const auto value_at = value.is_null() ? key_at : ctx.at(value);
        out.entries_.emplace_back(key, entry{&value, key_at, value_at});
    }
    return out;
}

const entry* mapping::find(std::string_view key) const
{
    const auto found = std::find_if(entries_.begin(), entries_.end(),
                                    [&](const auto& pair) { return pair.first == key; });
    return found == entries_.end() ? nullptr : &found->second;
}

} // namespace portico::config::detail
