// Loading portico.yaml: the file checks, the YAML parse, then the schema walk (schema.cpp).
// Every failure, the parsers' included, becomes a diagnostic with a position.

#include "portico/config/config.hpp"

#include "config/reader.hpp"
#include "config/schema.hpp"
#include "config/syntax.hpp"

#include <fmt/format.h>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>
#include <yaml.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <optional>
#include <sstream>
#include <system_error>

namespace portico::config {
namespace {

namespace fs = std::filesystem;
using detail::context;
using detail::node;
using detail::source_text;
using detail::text_mark;

constexpr std::string_view byte_order_mark = "\xEF\xBB\xBF";

load_result file_failure(const std::string& file, std::string message)
{
    load_result result;
    result.errors.push_back({{file, 0, 0}, std::move(message)});
    return result;
}

/// True unless `text` has a quote at `open` that is never closed. Escapes: backslash in
/// double quotes, a doubled quote in single quotes (YAML 1.2 §7.3).
bool is_quote_closed(std::string_view text, std::size_t open)
{
    const char quote = text[open];
    if (quote != '"' && quote != '\'') {
        return true;
    }
    for (std::size_t i = open + 1; i < text.size(); ++i) {
        if (quote == '"' && text[i] == '\\') {
            ++i;
        } else if (text[i] == quote) {
            if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
                ++i;
                continue;
            }
            return true;
        }
    }
    return false;
}

/// True when the scalar starting at `mark` opens a quote that the file never closes.
bool is_unclosed_at(std::string_view text, const YAML::Mark& mark)
{
    const auto open = static_cast<std::size_t>(mark.pos);
    return mark.pos >= 0 && open < text.size() && !is_quote_closed(text, open);
}

/// The syntax pass: counts documents and finds what yaml-cpp 0.7 gets wrong: a quoted
/// string it silently closes at the end of the file (`a: "abc` then a newline), and a stray
/// ',' at the start of a document, after which it returns the same empty document forever
/// (jbeder/yaml-cpp#1040).
class syntax_scan final : public YAML::EventHandler {
public:
    explicit syntax_scan(std::string_view text) : text_(text) {}

    std::size_t documents = 0;
    YAML::Mark second_document = YAML::Mark::null_mark();
    std::optional<std::size_t> unclosed_quote;
    std::optional<YAML::Mark> stuck;

    void OnDocumentStart(const YAML::Mark& mark) override
    {
        if (documents > 0 && mark.pos == last_start_) {
            stuck = mark;
        }
        last_start_ = mark.pos;
        if (++documents == 2) {
            second_document = mark;
        }
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  const std::string&) override
    {
        if (!unclosed_quote && is_unclosed_at(text_, mark)) {
            unclosed_quote = static_cast<std::size_t>(mark.pos);
        }
    }
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override
    {
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override
    {
    }
    void OnMapEnd() override {}

private:
    std::string_view text_;
    int last_start_ = -1;
};

// yaml-cpp reports tab indentation inconsistently ("illegal map value", "illegal block
// entry"...), so on a syntax error look for tabs in the indentation up to the failing line.
text_mark mark_of(const YAML::Mark& m)
{
    return m.is_null() ? text_mark{} : text_mark{m.line, m.column, m.pos};
}

bool report_tabs(context& ctx, std::size_t error_line)
{
    const auto& source = ctx.source();
    bool found = false;
    for (std::size_t i = 0; i <= error_line && i < source.line_count(); ++i) {
        const auto line = source.line(i);
        const auto indent_end = line.find_first_not_of(" \t");
        const auto indent = line.substr(0, indent_end);
        const auto tab = indent.find('\t');
        const bool blank = indent_end == std::string_view::npos || line[indent_end] == '\r';
        if (tab == std::string_view::npos || (blank && i != error_line)) {
            continue;
        }
        const auto line_start = static_cast<std::size_t>(line.data() - source.text().data());
        ctx.error(source.at_offset(line_start + tab),
                  "tab character in indentation; YAML indentation must use spaces");
        found = true;
    }
    return found;
}

void report_syntax_error(context& ctx, const YAML::ParserException& e)
{
    if (!e.mark.is_null() && e.mark.line >= 0 &&
        report_tabs(ctx, static_cast<std::size_t>(e.mark.line))) {
        return;
    }
    std::string message;
    if (e.msg == YAML::ErrorMsg::EOF_IN_SCALAR) {
        message = "unclosed quote: a quoted string runs to the end of the file";
    } else if (e.msg == YAML::ErrorMsg::UNKNOWN_ANCHOR) {
        // The usual cause: an unquoted wildcard host, which YAML reads as an alias.
        message = "invalid YAML: '*' starts an alias here; quote wildcard hosts, e.g. "
                  "\"*.app.localhost\"";
    } else if (e.msg == YAML::ErrorMsg::MAP_VALUE) {
        message = "invalid YAML: unexpected ':' (check the indentation, and quote values that "
                  "contain ': ')";
    } else {
        message = "invalid YAML: " + e.msg;
    }
    ctx.error(ctx.source().at(mark_of(e.mark)), std::move(message));
}

fs::path base_directory(const fs::path& file)
{
    std::error_code ec;
    const auto absolute = fs::absolute(file, ec);
    return (ec ? file : absolute).parent_path();
}

/**
 * True when a scalar anywhere under `node` (mapping keys included) opens an unclosed quote,
 * or when the walk runs out of `budget` nodes or nesting: aliases can make a tree cyclic
 * (`a: &a [*a]`) or exponentially large, and such a file takes the syntax pass instead.
 */
bool may_have_unclosed_quote(const YAML::Node& node, std::string_view text, std::size_t& budget,
                             unsigned depth = 0)
{
    constexpr unsigned max_depth = 64;
    if (budget == 0 || depth > max_depth) {
        return true;
    }
    --budget;
    switch (node.Type()) {
    case YAML::NodeType::Scalar: return is_unclosed_at(text, node.Mark());
    case YAML::NodeType::Sequence:
        for (auto it = node.begin(); it != node.end(); ++it) {
            if (may_have_unclosed_quote(*it, text, budget, depth + 1)) {
                return true;
            }
        }
        return false;
    case YAML::NodeType::Map:
        for (auto it = node.begin(); it != node.end(); ++it) {
            if (may_have_unclosed_quote(it->first, text, budget, depth + 1) ||
                may_have_unclosed_quote(it->second, text, budget, depth + 1)) {
                return true;
            }
        }
        return false;
    default: return false;
    }
}

/**
 * yaml-cpp's tree as a `node` tree. An alias shares its anchor's nodes, so a tree can be
 * cyclic (`a: &a [*a]`) or exponentially large; past `max_depth` or `budget` nodes the rest
 * becomes empty values, deeper and more than any schema reads.
 */
node from_yaml_cpp(const YAML::Node& in, std::size_t& budget, unsigned depth = 0)
{
    constexpr unsigned max_depth = 64;
    node out;
    const auto mark = in.Mark();
    if (!mark.is_null()) {
        out.mark = {mark.line, mark.column, mark.pos};
    }
    if (budget == 0 || depth > max_depth) {
        return out;
    }
    --budget;
    switch (in.Type()) {
    case YAML::NodeType::Scalar:
        out.type = node::kind::scalar;
        out.text = in.Scalar();
        break;
    case YAML::NodeType::Sequence:
        out.type = node::kind::sequence;
        out.children.reserve(in.size());
        for (auto it = in.begin(); it != in.end(); ++it) {
            out.children.push_back(from_yaml_cpp(*it, budget, depth + 1));
        }
        break;
    case YAML::NodeType::Map:
        out.type = node::kind::mapping;
        out.children.reserve(2 * in.size());
        for (auto it = in.begin(); it != in.end(); ++it) {
            out.children.push_back(from_yaml_cpp(it->first, budget, depth + 1));
            out.children.push_back(from_yaml_cpp(it->second, budget, depth + 1));
        }
        break;
    default: break;
    }
    return out;
}

/// yaml-cpp's tree of a text of `text_size` bytes as a `node` tree.
node tree_of(const YAML::Node& root, std::size_t text_size)
{
    // Without aliases a text holds fewer nodes than bytes; this many more leave room for
    // anchors reused across many routes, and bound what an alias bomb can expand to.
    constexpr std::size_t alias_allowance = 100'000;
    auto budget = text_size + alias_allowance;
    return from_yaml_cpp(root, budget);
}

/// A plain scalar that YAML 1.2's core schema, as yaml-cpp applies it, reads as null.
bool is_null_word(std::string_view s)
{
    return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

/**
 * The tree of an ordinary configuration file read with libyaml, whose scanner costs a tenth
 * of yaml-cpp's (1,000 routes: 15 M against 120 M instructions). "Ordinary" is one implicit
 * document with a mapping at the top and nothing whose position or meaning yaml-cpp might
 * give differently: no anchors, aliases, tags, directives, non-scalar keys or empty list
 * items. Anything else, and every file libyaml rejects, returns nullopt and goes to
 * yaml-cpp, whose diagnostics the messages were written for.
 */
class libyaml_reader {
public:
    explicit libyaml_reader(const source_text& source) : source_(source)
    {
        const auto text = source.text();
        ascii_ = std::none_of(text.begin(), text.end(),
                              [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
        // libyaml also breaks lines at a lone CR and, in UTF-8, at NEL, LS and PS; the
        // positions here count '\n' only.
        for (std::size_t i = text.find('\r'); i != std::string_view::npos;
             i = text.find('\r', i + 1)) {
            if (i + 1 >= text.size() || text[i + 1] != '\n') {
                unusual_breaks_ = true;
            }
        }
        if (!ascii_) {
            for (const std::string_view brk : {"\xC2\x85", "\xE2\x80\xA8", "\xE2\x80\xA9"}) {
                unusual_breaks_ = unusual_breaks_ || text.find(brk) != std::string_view::npos;
            }
        }
    }

    std::optional<node> read()
    {
        if (unusual_breaks_) {
            return std::nullopt;
        }
        yaml_parser_t parser;
        if (yaml_parser_initialize(&parser) == 0) {
            return std::nullopt;
        }
        const std::unique_ptr<yaml_parser_t, void (*)(yaml_parser_t*)> guard(&parser,
                                                                            yaml_parser_delete);
        const auto text = source_.text();
        yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()),
                                     text.size());
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
        for (;;) {
            yaml_event_t event;
            if (yaml_parser_parse(&parser, &event) == 0) {
                return std::nullopt;
            }
            const std::unique_ptr<yaml_event_t, void (*)(yaml_event_t*)> owned(&event,
                                                                             yaml_event_delete);
            if (!accept(event)) {
                return std::nullopt;
            }
            if (event.type == YAML_STREAM_END_EVENT) {
                break;
            }
        }
        if (!root_ || !root_->is_mapping()) {
            return std::nullopt;
        }
        return std::move(root_);
    }

private:
    text_mark mark_of(const yaml_mark_t& m) const
    {
        // libyaml counts characters; the marks here are bytes, as yaml-cpp's.
        const auto line = m.line;
        if (ascii_) {
            return {static_cast<int>(line), static_cast<int>(m.column), static_cast<int>(m.index)};
        }
        const auto start = source_.line_start(line);
        const auto rest = source_.text().substr(start);
        std::size_t byte = 0;
        for (std::size_t chars = 0; chars < m.column && byte < rest.size(); ++chars) {
            ++byte;
            while (byte < rest.size() && (static_cast<unsigned char>(rest[byte]) & 0xc0) == 0x80) {
                ++byte;
            }
        }
        return {static_cast<int>(line), static_cast<int>(byte), static_cast<int>(start + byte)};
    }

    /// Adds a finished node to the collection being built; false when it cannot be read here.
    bool attach(node n)
    {
        if (stack_.empty()) {
            if (root_) {
                return false;
            }
            root_ = std::move(n);
            return true;
        }
        auto& parent = stack_.back();
        if (parent.is_sequence() && n.is_null()) {
            return false; // yaml-cpp marks an empty item elsewhere; make_item relies on it
        }
        if (parent.is_mapping() && parent.children.size() % 2 == 0 && !n.is_scalar()) {
            return false; // a key that is empty or a collection
        }
        parent.children.push_back(std::move(n));
        return true;
    }

    bool accept(const yaml_event_t& e)
    {
        switch (e.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_STREAM_END_EVENT: return true;
        case YAML_DOCUMENT_START_EVENT:
            return ++documents_ == 1 && e.data.document_start.implicit != 0 &&
                   e.data.document_start.version_directive == nullptr &&
                   e.data.document_start.tag_directives.start ==
                       e.data.document_start.tag_directives.end;
        case YAML_DOCUMENT_END_EVENT: return e.data.document_end.implicit != 0;
        case YAML_SCALAR_EVENT: {
            const auto& s = e.data.scalar;
            if (s.anchor != nullptr || s.tag != nullptr) {
                return false;
            }
            node n;
            n.mark = mark_of(e.start_mark);
            const std::string_view value(reinterpret_cast<const char*>(s.value), s.length);
            if (s.style == YAML_PLAIN_SCALAR_STYLE && is_null_word(value)) {
                n.type = node::kind::null;
            } else {
                n.type = node::kind::scalar;
                n.text = value;
            }
            return attach(std::move(n));
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            const bool sequence = e.type == YAML_SEQUENCE_START_EVENT;
            const auto* anchor = sequence ? e.data.sequence_start.anchor : e.data.mapping_start.anchor;
            const auto* tag = sequence ? e.data.sequence_start.tag : e.data.mapping_start.tag;
            if (anchor != nullptr || tag != nullptr) {
                return false;
            }
            if (!stack_.empty() && stack_.back().is_mapping() &&
                stack_.back().children.size() % 2 == 0) {
                return false; // a collection as a key
            }
            node n;
            n.type = sequence ? node::kind::sequence : node::kind::mapping;
            n.mark = mark_of(e.start_mark);
            if (stack_.size() >= max_nesting) {
                // libyaml's scanner does work in proportion to the nesting for each token:
                // "[[[[...]]]]" of 100,000 levels took a minute to read.
                too_deep_ = n.mark;
                return false;
            }
            stack_.push_back(std::move(n));
            return true;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            if (stack_.empty()) {
                return false;
            }
            auto n = std::move(stack_.back());
            stack_.pop_back();
            return attach(std::move(n));
        }
        default: return false; // aliases
        }
    }

public:
    /// The deepest nesting a configuration is read with (the schema's deepest is 5).
    static constexpr std::size_t max_nesting = 64;

    /// Where a collection nested deeper than `max_nesting` starts, when `read` found one.
    const std::optional<text_mark>& too_deep() const noexcept { return too_deep_; }

private:
    const source_text& source_;
    std::optional<text_mark> too_deep_;
    bool ascii_ = true;
    bool unusual_breaks_ = false;
    int documents_ = 0;
    std::vector<node> stack_;
    std::optional<node> root_;
};

/**
 * The file as `YAML::Load` reads it, when it is an ordinary configuration: one document, a
 * mapping at the top, every quote closed. Each yaml-cpp pass over a large file costs more
 * than the rest of start-up, so the syntax pass runs only for files that might need its
 * diagnostics; nullopt sends the text through it, which reports what is wrong exactly as
 * before. A document marker anywhere at a line start counts as a possible second document.
 */
std::optional<YAML::Node> load_ordinary(const std::string& owned)
{
    const std::string_view text = owned;
    for (const std::string_view marker : {"---", "..."}) {
        if (text.starts_with(marker)) {
            return std::nullopt;
        }
    }
    for (const std::string_view marker : {"\n---", "\n..."}) {
        if (text.find(marker) != std::string_view::npos) {
            return std::nullopt;
        }
    }
    YAML::Node root;
    try {
        root = YAML::Load(owned);
    } catch (const YAML::Exception&) {
        return std::nullopt;
    }
    // Without aliases a file cannot hold more nodes than bytes.
    std::size_t budget = text.size() + 1;
    if (!root.IsMap() || may_have_unclosed_quote(root, text, budget)) {
        return std::nullopt;
    }
    return root;
}

load_result parse_text(std::string_view text, const fs::path& file, const environment& env)
{
    const auto name = file.string();
    if (text.size() > detail::max_file_bytes) {
        return file_failure(name, detail::too_large_message(text.size()));
    }
    if (text.starts_with(byte_order_mark)) {
        text.remove_prefix(byte_order_mark.size());
    }
    const detail::source_text source(name, text);
    context ctx(source, env, base_directory(file));
    if (const auto bad = detail::find_binary_content(text)) {
        ctx.error(source.at_offset(bad->offset), fmt::format("is not a text file ({})", bad->what));
        return ctx.finish({});
    }

    libyaml_reader reader(source);
    if (auto root = reader.read()) {
        auto cfg = detail::read_config(ctx, *root);
        cfg.source = file;
        return ctx.finish(std::move(cfg));
    }
    if (const auto& deep = reader.too_deep()) {
        ctx.error(source.at(*deep), fmt::format("lists and mappings are nested more than {} "
                                                "levels deep here; no configuration needs more than 6",
                                                libyaml_reader::max_nesting));
        return ctx.finish({});
    }
    const std::string owned(text);
    if (auto root = load_ordinary(owned)) {
        const auto tree = tree_of(*root, text.size());
        auto cfg = detail::read_config(ctx, tree);
        cfg.source = file;
        return ctx.finish(std::move(cfg));
    }
    syntax_scan scan(text);
    try {
        std::istringstream stream(owned);
        YAML::Parser parser(stream);
        while (!scan.stuck && parser.HandleNextDocument(scan)) {
        }
    } catch (const YAML::ParserException& e) {
        report_syntax_error(ctx, e);
        return ctx.finish({});
    }
    if (scan.stuck) {
        const auto offset = static_cast<std::size_t>(std::max(scan.stuck->pos, 0));
        const char c = offset < text.size() ? text[offset] : ' ';
        ctx.error(source.at(mark_of(*scan.stuck)), fmt::format("invalid YAML: unexpected '{}'", c));
        return ctx.finish({});
    }
    if (scan.unclosed_quote) {
        ctx.error(source.at_offset(*scan.unclosed_quote),
                  "unclosed quote: the string starting here runs to the end of the file");
        return ctx.finish({});
    }
    if (scan.documents > 1) {
        ctx.error(source.at(mark_of(scan.second_document)),
                  "only one YAML document is allowed; remove the '---' separator");
    }
    const auto root = tree_of(YAML::Load(owned), text.size());
    if (root.is_null()) {
        ctx.error(source.whole_file(), "is empty; a configuration needs at least one key, e.g. "
                                       "'routes' (remove the file to use the built-in default)");
        return ctx.finish({});
    }
    if (!root.is_mapping()) {
        ctx.error(ctx.at(root),
                  fmt::format("the top level must be a mapping of keys such as listen and "
                              "routes, not {}",
                              detail::kind_of(root)));
        return ctx.finish({});
    }
    auto cfg = detail::read_config(ctx, root);
    cfg.source = file;
    return ctx.finish(std::move(cfg));
}

} // namespace

load_result parse(std::string_view text, const fs::path& file, const environment& env)
{
    // Nothing may escape: a yaml-cpp or library failure becomes a diagnostic like any other.
    try {
        return parse_text(text, file, env);
    } catch (const YAML::Exception& e) {
        return file_failure(file.string(), fmt::format("cannot be read as YAML: {}", e.what()));
    } catch (const std::exception& e) {
        return file_failure(file.string(), fmt::format("cannot be loaded: {}", e.what()));
    }
}

load_result load_file(const fs::path& file, const environment& env)
{
    try {
        auto contents = detail::read_small_file(file);
        if (!contents.ok()) {
            return file_failure(file.string(), std::move(contents.error));
        }
        return parse(contents.value, file, env);
    } catch (const std::exception& e) {
        return file_failure(file.string(), fmt::format("cannot be loaded: {}", e.what()));
    }
}

} // namespace portico::config
