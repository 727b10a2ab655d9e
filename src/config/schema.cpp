#include "config/schema.hpp"

#include "config/syntax.hpp"
#include "portico/core/uri.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <utility>
#include <vector>

namespace portico::config::detail {
namespace {

namespace fs = std::filesystem;

constexpr std::array<std::string_view, 9> top_keys = {
    "listen", "allow_external",       "workers", "tls", "admin", "timeouts", "limits",
    "routes", "allow_remote_backends"};
constexpr std::array<std::string_view, 2> listen_keys = {"address", "tls"};
constexpr std::array<std::string_view, 3> tls_keys = {"ca_dir", "ca_permitted_names",
                                                      "certificates"};
constexpr std::array<std::string_view, 3> certificate_keys = {"hosts", "cert", "key"};
constexpr std::array<std::string_view, 5> timeout_keys = {"connect", "header", "idle", "upstream",
                                                          "shutdown"};
constexpr std::array<std::string_view, 2> limit_keys = {"header_bytes", "body_bytes"};
constexpr std::array<std::string_view, 9> route_keys = {"host",
                                                        "path",
                                                        "to",
                                                        "strip_prefix",
                                                        "headers",
                                                        "host_header",
                                                        "insecure_skip_verify",
                                                        "redirect_https",
                                                        "tls_passthrough"};
constexpr std::array<std::string_view, 2> header_keys = {"request", "response"};
constexpr std::array<std::string_view, 2> header_rule_keys = {"set", "remove"};
// Keys whose meaning needs an HTTP exchange, which a passthrough route never decrypts.
constexpr std::array<std::string_view, 4> passthrough_forbidden = {"path", "strip_prefix",
                                                                   "headers", "host_header"};

constexpr unsigned max_workers = 256;
constexpr std::uint64_t min_header_bytes = 1024;
constexpr std::uint64_t max_header_bytes = 16 * 1024 * 1024;

/// One timeout key, the field it sets, and whether 0 ("no limit") is allowed.
struct timeout_field {
    std::string_view key;
    std::chrono::milliseconds timeouts::*field;
    bool allow_zero;
};

constexpr std::array<timeout_field, 5> timeout_fields = {{
    {"connect", &timeouts::connect, false},
    {"header", &timeouts::header, false},
    {"idle", &timeouts::idle, false},
    {"upstream", &timeouts::upstream, true},
    {"shutdown", &timeouts::shutdown, false},
}};

std::string join(const std::vector<std::string>& names)
{
    return fmt::format("{}", fmt::join(names, ", "));
}

bool is_under(std::string_view host, std::string_view suffix)
{
    return host == suffix || (host.size() > suffix.size() && host.ends_with(suffix) &&
                              host[host.size() - suffix.size() - 1] == '.');
}

// A certificate name covers a host if equal, or as "*.suffix" for one more label (RFC 6125
// §6.4.3: the wildcard stands for exactly one label).
bool certificate_covers(std::string_view name, std::string_view host)
{
    if (name == host) {
        return true;
    }
    if (!name.starts_with("*.") || host.starts_with("*.")) {
        return false;
    }
    const auto dot = host.find('.');
    return dot != std::string_view::npos && host.substr(dot + 1) == name.substr(2);
}

std::optional<tls_mode> tls_mode_named(std::string_view text)
{
    if (text == "auto") {
        return tls_mode::automatic;
    }
    if (text == "only") {
        return tls_mode::only;
    }
    if (text == "off") {
        return tls_mode::off;
    }
    return std::nullopt;
}

/// A listen address already seen, as the overlap check names it.
struct bound_address {
    std::string host; ///< canonical, "localhost" included
    std::string text; ///< as written
    int line = 0;
};

/// What the cross-route checks need to remember about earlier routes.
struct route_seen {
    std::size_t number = 0;
    bool passthrough = false;
};

/// Walks the top-level mapping and fills a `config`.
class loader {
public:
    explicit loader(context& ctx) : ctx_(ctx) {}

    config load(const node& root);

private:
    void read_flags(const mapping& top);
    void read_workers(const entry& e);
    void read_admin(const entry& e);
    void read_tls(const entry* e);
    void read_permitted_names(const entry& e);
    void read_certificate(const entry& item, std::size_t number);
    std::optional<fs::path> read_pem_file(const mapping& m, std::string_view key,
                                          std::string_view prefix, std::string_view what);
    void read_listen(const entry* e);
    void read_listener(const entry& item, std::size_t number);
    void check_listen_overlap(const listener& l, const std::string& text,
                              const std::string& prefix);
    void read_timeouts(const entry& e);
    void read_limits(const entry& e);
    void read_routes(const entry& e);
    void read_route(const entry& item, std::size_t number);
    bool read_route_host(const mapping& m, const std::string& prefix, route& r);
    /// False when the path is refused (the route is then left out of conflict checks).
    bool read_route_path(const entry& e, const std::string& prefix, route& r);
    void read_route_target(const mapping& m, const std::string& prefix, bool passthrough, route& r);
    void read_host_header(const entry& e, const std::string& prefix, route& r);
    void check_not_own_listener(const route& r, const source_location& to_at,
                                const std::string& prefix);
    void read_headers(const entry& e, const std::string& prefix, route& r);
    void read_header_rules(const entry& e, const std::string& prefix, const std::string& name,
                           header_rules& rules);
    void read_header_set(const entry& e, const std::string& prefix, const std::string& section,
                         header_rules& rules);
    bool check_header_name(const std::string& header, const source_location& at,
                           const std::string& prefix, std::string_view section,
                           std::string_view verb);
    /// `path_known`: false when the path was refused and left at '/', which must then not
    /// be reported as taken.
    void check_route_conflicts(const route& r, const source_location& host_at, bool path_known);
    /// Whether a listener serves TLS (`listen` is read before the routes).
    bool serves_tls() const
    {
        return std::any_of(cfg_.listen.begin(), cfg_.listen.end(),
                           [](const listener& l) { return l.tls != tls_mode::off; });
    }
    void warn_outside_permitted(const std::string& host, const source_location& at,
                                std::string_view prefix);
    std::optional<fs::path> expand(const entry& e, std::string_view subject);

    context& ctx_;
    config cfg_;
    std::optional<source_location> admin_at_;
    std::map<std::pair<std::string, std::uint16_t>, bound_address> bound_;
    std::map<std::string, route_seen> hosts_;
    std::map<std::pair<std::string, std::string>, std::size_t> host_paths_;
    std::map<std::string, std::size_t> certificate_hosts_;
};

config loader::load(const node& root)
{
    const auto top =
        mapping::read(ctx_, make_item(ctx_, root), {top_keys, "", "", "a mapping", true});
    // The loader reads one file once, so what it built is handed over rather than copied:
    // a copy of a thousand routes is a few hundred page faults at start.
    if (!top) {
        return std::move(cfg_);
    }
    // Flags, admin and tls first: the listen, route and warning checks depend on them,
    // wherever they stand in the file.
    read_flags(*top);
    if (const auto* e = top->find("admin")) {
        read_admin(*e);
    }
    read_tls(top->find("tls"));
    read_listen(top->find("listen"));
    if (const auto* e = top->find("timeouts")) {
        read_timeouts(*e);
    }
    if (const auto* e = top->find("limits")) {
        read_limits(*e);
    }
    if (const auto* e = top->find("routes")) {
        read_routes(*e);
    }
    if (admin_at_) {
        warn_outside_permitted(cfg_.admin, *admin_at_, "admin ");
    }
    return std::move(cfg_);
}

void loader::read_flags(const mapping& top)
{
    if (const auto* e = top.find("allow_external")) {
        cfg_.allow_external = read_bool(ctx_, *e, "'allow_external'").value_or(false);
    }
    if (const auto* e = top.find("allow_remote_backends")) {
        cfg_.allow_remote_backends = read_bool(ctx_, *e, "'allow_remote_backends'").value_or(false);
    }
    if (const auto* e = top.find("workers")) {
        read_workers(*e);
    }
}

void loader::read_workers(const entry& e)
{
    constexpr std::string_view expected = "an integer from 0 to 256 (0 = one per core)";
    const auto text = read_scalar(ctx_, e, "'workers'", expected);
    if (!text) {
        return;
    }
    // At most three digits keeps the conversion from overflowing.
    const bool digits = !text->empty() && text->size() <= 3 &&
                        text->find_first_not_of("0123456789") == std::string::npos;
    const auto value = digits ? static_cast<unsigned>(std::stoul(*text)) : max_workers + 1;
    if (value > max_workers) {
        ctx_.error(e.value_at, fmt::format("'workers' must be {}", expected));
        return;
    }
    cfg_.workers = value;
}

void loader::read_admin(const entry& e)
{
    const auto text = read_scalar(ctx_, e, "'admin'", "a host name such as portico.localhost");
    if (!text) {
        return;
    }
    auto host = parse_host_pattern(*text, false);
    if (!host.ok()) {
        ctx_.error(e.value_at, fmt::format("admin host '{}' is not valid: {}", *text, host.error));
        return;
    }
    cfg_.admin = std::move(host.value);
    admin_at_ = e.value_at;
}

std::optional<fs::path> loader::expand(const entry& e, std::string_view subject)
{
    const auto text = read_scalar(ctx_, e, subject, "a path");
    if (!text) {
        return std::nullopt;
    }
    auto path = expand_path(*text, ctx_.env(), ctx_.base_dir());
    if (!path.ok()) {
        ctx_.error(e.value_at, fmt::format("{}: {}", subject, path.error));
        return std::nullopt;
    }
    return std::move(path.value);
}

void loader::read_tls(const entry* e)
{
    std::optional<mapping> m;
    if (e) {
        m = mapping::read(ctx_, *e,
                          {tls_keys, "", "tls",
                           "a mapping with ca_dir, ca_permitted_names and certificates", true});
        if (!m) {
            return;
        }
    }
    const auto* ca_dir = m ? m->find("ca_dir") : nullptr;
    cfg_.tls.ca_dir_at = ca_dir ? ca_dir->value_at : ctx_.source().whole_file();
    if (ca_dir) {
        if (auto path = expand(*ca_dir, "'tls.ca_dir'")) {
            cfg_.tls.ca_dir = std::move(*path);
        }
    } else if (auto fallback = default_ca_dir(ctx_.env())) {
        cfg_.tls.ca_dir = std::move(*fallback);
    } else {
        ctx_.error(ctx_.source().whole_file(),
                   "'tls.ca_dir' has no default because neither XDG_DATA_HOME nor HOME is set; "
                   "set tls.ca_dir");
    }
    if (!m) {
        return;
    }
    if (const auto* names = m->find("ca_permitted_names")) {
        read_permitted_names(*names);
    }
    if (const auto* certificates = m->find("certificates")) {
        const auto items = read_list(ctx_, *certificates, "'tls.certificates'",
                                     "a list of {hosts, cert, key} entries");
        for (std::size_t i = 0; items && i < items->size(); ++i) {
            read_certificate((*items)[i], i + 1);
        }
    }
}

/// A one-label name that no site on the internet can be under: the special-use names of
/// RFC 2606 and RFC 6761, `internal` (ICANN, 2024), those ICANN will not delegate (`corp`,
/// `home`, `mail`) and the suffixes home routers hand out.
bool is_private_top_level(std::string_view name)
{
    constexpr std::array<std::string_view, 11> names = {
        "localhost", "test", "example", "invalid", "local", "internal",
        "lan",       "home", "corp",    "mail",    "localdomain"};
    return std::find(names.begin(), names.end(), name) != names.end();
}

void loader::read_permitted_names(const entry& e)
{
    constexpr std::string_view subject = "'tls.ca_permitted_names'";
    constexpr std::string_view expected =
        "a non-empty list of DNS suffixes such as [localhost, test]";
    const auto items = read_list(ctx_, e, subject, expected);
    if (!items) {
        return;
    }
    if (items->empty()) {
        ctx_.error(e.value_at, fmt::format("{} must be {}", subject, expected));
        return;
    }
    cfg_.tls.ca_permitted_names.clear();
    cfg_.tls.permitted_names_at = e.value_at;
    for (const auto& item : *items) {
        const auto text = read_scalar(ctx_, item, subject, expected);
        if (!text) {
            continue;
        }
        auto problem = canonical_ipv4(*text) ? std::string("an IP address is not a DNS suffix")
                                             : host_name_problem(*text, false);
        if (!problem.empty()) {
            ctx_.error(item.value_at, fmt::format("{}: '{}' is not a valid DNS suffix: {}", subject,
                                                  *text, problem));
            continue;
        }
        auto name = uri::normalize_host(*text).value_or(*text);
        if (name.find('.') == std::string::npos && !is_private_top_level(name)) {
            ctx_.warning(item.value_at,
                         fmt::format("{}: '{}' is a top-level domain on the internet: the CA "
                                     "could sign every site under it, the risk the constraint "
                                     "is there to remove; prefer a name of your own, such as "
                                     "{}.internal",
                                     subject, name, name));
        }
        cfg_.tls.ca_permitted_names.push_back(std::move(name));
    }
    const auto& names = cfg_.tls.ca_permitted_names;
    if (!names.empty() && std::find(names.begin(), names.end(), "localhost") == names.end()) {
        ctx_.warning(e.value_at, fmt::format("{} leaves out localhost: https://localhost will not "
                                             "verify (https://127.0.0.1 and https://[::1] do)",
                                             subject));
    }
}

std::optional<fs::path> loader::read_pem_file(const mapping& m, std::string_view key,
                                              std::string_view prefix, std::string_view what)
{
    const auto* e = m.find(key);
    const auto subject = subject_of(prefix, key);
    if (!e) {
        ctx_.error(m.where(), fmt::format("{} is required ({})", subject, what));
        return std::nullopt;
    }
    auto path = expand(*e, subject);
    if (!path) {
        return std::nullopt;
    }
    // Full PEM parsing and the key match belong to the TLS module; catch the common
    // mistakes (wrong path, DER file) here, with the position.
    const auto contents = read_small_file(*path);
    if (!contents.ok()) {
        ctx_.error(e->value_at,
                   fmt::format("{} file '{}' {}", subject, path->string(), contents.error));
        return std::nullopt;
    }
    if (contents.value.find("-----BEGIN") == std::string::npos) {
        ctx_.error(e->value_at, fmt::format("{} file '{}' is not PEM (no '-----BEGIN' line)",
                                            subject, path->string()));
        return std::nullopt;
    }
    cfg_.referenced_files.push_back(*path);
    return path;
}

void loader::read_certificate(const entry& item, std::size_t number)
{
    const auto prefix = fmt::format("tls.certificates {}: ", number);
    const auto m = mapping::read(
        ctx_, item,
        {certificate_keys, prefix, "", "a mapping with 'hosts', 'cert' and 'key'", false});
    if (!m) {
        return;
    }
    user_certificate certificate;
    certificate.where = item.value_at;
    const auto hosts_subject = subject_of(prefix, "hosts");
    constexpr std::string_view hosts_expected = "a non-empty list of host names";
    if (const auto* hosts = m->find("hosts")) {
        const auto items = read_list(ctx_, *hosts, hosts_subject, hosts_expected);
        if (items && items->empty()) {
            ctx_.error(hosts->value_at,
                       fmt::format("{} must be {}", hosts_subject, hosts_expected));
        }
        for (std::size_t i = 0; items && i < items->size(); ++i) {
            const auto& host_item = (*items)[i];
            const auto text = read_scalar(ctx_, host_item, hosts_subject, hosts_expected);
            if (!text) {
                continue;
            }
            auto host = parse_host_pattern(*text, true);
            if (!host.ok()) {
                ctx_.error(host_item.value_at,
                           fmt::format("{}host '{}' is not valid: {}", prefix, *text, host.error));
                continue;
            }
            const auto [earlier, inserted] = certificate_hosts_.emplace(host.value, number);
            if (!inserted) {
                ctx_.error(
                    host_item.value_at,
                    fmt::format("{}host '{}' already has a certificate (tls.certificates {})",
                                prefix, host.value, earlier->second));
                continue;
            }
            certificate.hosts.push_back(std::move(host.value));
        }
    } else {
        ctx_.error(m->where(), fmt::format("{} is required ({})", hosts_subject, hosts_expected));
    }
    if (auto cert = read_pem_file(*m, "cert", prefix, "a PEM certificate file")) {
        certificate.cert = std::move(*cert);
        certificate.cert_at = m->find("cert")->value_at;
    }
    if (auto key = read_pem_file(*m, "key", prefix, "a PEM private key file")) {
        certificate.key = std::move(*key);
        certificate.key_at = m->find("key")->value_at;
    }
    cfg_.tls.certificates.push_back(std::move(certificate));
}

void loader::read_listen(const entry* e)
{
    if (!e || e->value->is_null()) {
        cfg_.listen.push_back(default_listener());
        const auto& l = cfg_.listen.back();
        bound_.emplace(std::pair(l.host, l.port), bound_address{l.host, l.to_string(), 0});
        return;
    }
    if (e->value->is_scalar()) {
        read_listener(*e, 1);
        return;
    }
    const auto items =
        read_list(ctx_, *e, "'listen'", "a list of addresses such as 127.0.0.1:7080");
    if (!items) {
        return;
    }
    if (items->empty()) {
        ctx_.error(e->value_at, "'listen' needs at least one address such as 127.0.0.1:7080");
    }
    for (std::size_t i = 0; i < items->size(); ++i) {
        read_listener((*items)[i], i + 1);
    }
}

void loader::read_listener(const entry& item, std::size_t number)
{
    const auto prefix = fmt::format("listen {}: ", number);
    constexpr std::string_view expected = "an address such as 127.0.0.1:7080";
    listener out;
    const entry* address = &item;
    std::optional<mapping> m;
    if (item.value->is_mapping()) {
        m = mapping::read(ctx_, item, {listen_keys, prefix, "", "a mapping", false});
        address = m ? m->find("address") : nullptr;
        if (m && !address) {
            ctx_.error(m->where(), fmt::format("{}'address' is required, e.g. "
                                               "address: 127.0.0.1:7080",
                                               prefix));
        }
        if (const auto* tls = m ? m->find("tls") : nullptr) {
            const auto subject = subject_of(prefix, "tls");
            if (const auto text = read_scalar(ctx_, *tls, subject, "auto, only or off")) {
                if (const auto mode = tls_mode_named(*text)) {
                    out.tls = *mode;
                } else {
                    ctx_.error(tls->value_at, fmt::format("{} must be auto, only or off", subject));
                }
            }
        }
        if (!address) {
            return;
        }
    }
    const auto subject = m ? subject_of(prefix, "address") : fmt::format("listen {}:", number);
    const auto text = read_scalar(
        ctx_, *address, subject,
        m ? expected : "an address such as 127.0.0.1:7080 or a mapping with 'address' and 'tls'");
    if (!text) {
        return;
    }
    auto parsed = parse_listen_address(*text);
    if (!parsed.ok()) {
        ctx_.error(address->value_at, prefix + parsed.error);
        return;
    }
    out.host = std::move(parsed.value.host);
    out.port = parsed.value.port;
    out.where = address->value_at;
    if (!cfg_.allow_external && !is_loopback(out.host)) {
        ctx_.error(out.where, fmt::format("{}address '{}' is not a loopback address; set "
                                          "allow_external: true to listen on other interfaces",
                                          prefix, *text));
    }
    // Port 0 asks the system for a fresh port each time, so it never collides.
    if (out.port != 0) {
        check_listen_overlap(out, *text, prefix);
    }
    cfg_.listen.push_back(std::move(out));
}

void loader::check_listen_overlap(const listener& l, const std::string& text,
                                  const std::string& prefix)
{
    // localhost binds both loopback addresses, so it collides with either of them.
    const auto binds = l.host == "localhost" ? std::vector<std::string>{"127.0.0.1", "::1"}
                                             : std::vector<std::string>{l.host};
    for (const auto& bind : binds) {
        const auto [earlier, inserted] =
            bound_.emplace(std::pair(bind, l.port), bound_address{l.host, text, l.where.line});
        if (inserted) {
            continue;
        }
        const auto& first = earlier->second;
        if (first.host == l.host) {
            ctx_.error(l.where, fmt::format("{}address '{}' is listed twice (first at line {})",
                                            prefix, text, first.line));
        } else {
            ctx_.error(l.where, fmt::format("{}address '{}' overlaps '{}' at line {} (localhost "
                                            "binds both 127.0.0.1 and ::1)",
                                            prefix, text, first.text, first.line));
        }
        return;
    }
}

void loader::read_timeouts(const entry& e)
{
    const auto m = mapping::read(ctx_, e, {timeout_keys, "", "timeouts", "a mapping", true});
    if (!m) {
        return;
    }
    for (const auto& t : timeout_fields) {
        if (const auto* value = m->find(t.key)) {
            const auto subject = fmt::format("'timeouts.{}'", t.key);
            if (const auto d = read_duration(ctx_, *value, subject, t.allow_zero)) {
                cfg_.timeouts.*t.field = *d;
            }
        }
    }
}

void loader::read_limits(const entry& e)
{
    const auto m = mapping::read(ctx_, e, {limit_keys, "", "limits", "a mapping", true});
    if (!m) {
        return;
    }
    if (const auto* header = m->find("header_bytes")) {
        if (const auto size = read_size(ctx_, *header, "'limits.header_bytes'")) {
            if (*size < min_header_bytes || *size > max_header_bytes) {
                ctx_.error(header->value_at,
                           "'limits.header_bytes' must be between 1024 bytes and 16 MiB");
            } else {
                cfg_.limits.header_bytes = *size;
            }
        }
    }
    if (const auto* body = m->find("body_bytes")) {
        if (const auto size = read_size(ctx_, *body, "'limits.body_bytes'")) {
            cfg_.limits.body_bytes = *size;
        }
    }
}

void loader::read_routes(const entry& e)
{
    const auto items = read_list(ctx_, e, "'routes'", "a list of routes");
    if (items) {
        cfg_.routes.reserve(items->size());
    }
    for (std::size_t i = 0; items && i < items->size(); ++i) {
        read_route((*items)[i], i + 1);
    }
}

void loader::read_route(const entry& item, std::size_t number)
{
    // Every message about the route starts so; made for each route, so without a format.
    std::string prefix = "route ";
    prefix.append(std::to_string(number)).append(": ");
    const auto m = mapping::read(ctx_, item,
                                 {route_keys, prefix, "", "a mapping with 'host' and 'to'", false});
    if (!m) {
        return;
    }
    route r;
    r.number = number;
    r.where = item.value_at;
    if (const auto* e = m->find("tls_passthrough")) {
        r.tls_passthrough =
            read_bool(ctx_, *e, subject_of(prefix, "tls_passthrough")).value_or(false);
    }
    if (r.tls_passthrough) {
        for (const auto key : passthrough_forbidden) {
            if (const auto* e = m->find(key)) {
                ctx_.error(e->key_at, fmt::format("{}'{}' is not allowed with tls_passthrough: the "
                                                  "TLS stream is forwarded without decrypting it",
                                                  prefix, key));
            }
        }
    }
    const bool host_ok = read_route_host(*m, prefix, r);
    bool path_ok = true;
    if (const auto* e = m->find("path"); e && !r.tls_passthrough) {
        path_ok = read_route_path(*e, prefix, r);
    }
    read_route_target(*m, prefix, r.tls_passthrough, r);
    if (const auto* e = m->find("strip_prefix"); e && !r.tls_passthrough) {
        r.strip_prefix = read_bool(ctx_, *e, subject_of(prefix, "strip_prefix")).value_or(false);
    }
    if (const auto* e = m->find("headers"); e && !r.tls_passthrough) {
        read_headers(*e, prefix, r);
    }
    if (const auto* e = m->find("host_header"); e && !r.tls_passthrough) {
        read_host_header(*e, prefix, r);
    }
    if (const auto* e = m->find("redirect_https")) {
        r.redirect_https =
            read_bool(ctx_, *e, subject_of(prefix, "redirect_https")).value_or(false);
        if (r.redirect_https && !serves_tls()) {
            ctx_.warning(e->value_at, fmt::format("{}redirect_https has no effect: every listener "
                                                  "is tls: off, so none serves https",
                                                  prefix));
        }
    }
    if (r.tls_passthrough && !serves_tls()) {
        if (const auto* e = m->find("tls_passthrough")) {
            ctx_.warning(e->value_at, fmt::format("{}tls_passthrough cannot be reached: every "
                                                  "listener is tls: off",
                                                  prefix));
        }
    }
    if (const auto* e = m->find("insecure_skip_verify")) {
        r.insecure_skip_verify =
            read_bool(ctx_, *e, subject_of(prefix, "insecure_skip_verify")).value_or(false);
        if (r.insecure_skip_verify && r.to.scheme != backend_scheme::https) {
            ctx_.warning(e->value_at, fmt::format("{}insecure_skip_verify has no effect: 'to' is "
                                                  "not an https:// backend",
                                                  prefix));
        }
    }
    if (const auto* e = m->find("to")) {
        check_not_own_listener(r, e->value_at, prefix);
    }
    if (host_ok) {
        const auto& host_at = m->find("host")->value_at;
        check_route_conflicts(r, host_at, path_ok);
        if (!r.tls_passthrough) {
            warn_outside_permitted(r.host, host_at, prefix);
        }
    }
    cfg_.routes.push_back(std::move(r));
}

bool loader::read_route_host(const mapping& m, const std::string& prefix, route& r)
{
    const auto* e = m.find("host");
    if (!e) {
        ctx_.error(m.where(),
                   fmt::format("{}'host' is required, e.g. host: app.localhost", prefix));
        return false;
    }
    const auto text =
        read_scalar(ctx_, *e, subject_of(prefix, "host"), "a host name such as app.localhost");
    if (!text) {
        return false;
    }
    auto host = parse_host_pattern(*text, true);
    if (!host.ok()) {
        ctx_.error(e->value_at,
                   fmt::format("{}host '{}' is not valid: {}", prefix, *text, host.error));
        return false;
    }
    r.host = std::move(host.value);
    return true;
}

bool loader::read_route_path(const entry& e, const std::string& prefix, route& r)
{
    const auto subject = subject_of(prefix, "path");
    const auto text = read_scalar(ctx_, e, subject, "a path such as /api");
    if (!text) {
        return false;
    }
    if (!text->starts_with('/')) {
        ctx_.error(e.value_at, fmt::format("{} must start with '/', e.g. /api", subject));
        return false;
    }
    if (text->find_first_of("?#") != std::string::npos) {
        ctx_.error(e.value_at,
                   fmt::format("{} must not contain a query or fragment ('?', '#')", subject));
        return false;
    }
    auto path = uri::normalize_prefix(*text);
    if (!path) {
        ctx_.error(e.value_at, fmt::format("{} must be a URL path such as /api (no spaces, control "
                                           "characters or malformed %-escapes)",
                                           subject));
        return false;
    }
    r.path = std::move(*path);
    return true;
}

void loader::read_route_target(const mapping& m, const std::string& prefix, bool passthrough,
                               route& r)
{
    const auto* e = m.find("to");
    const auto subject = subject_of(prefix, "to");
    if (!e) {
        ctx_.error(m.where(), fmt::format("{} is required ({})", subject, backend_forms));
        return;
    }
    const auto text = read_scalar(ctx_, *e, subject, backend_forms);
    if (!text) {
        return;
    }
    auto parsed = parse_backend(*text);
    if (!parsed.ok()) {
        ctx_.error(e->value_at, prefix + parsed.error);
        return;
    }
    backend& to = parsed.value;
    if (passthrough && text->find("://") != std::string::npos) {
        ctx_.error(e->value_at, fmt::format("{} must be host:port or unix:/path with "
                                            "tls_passthrough: the TLS stream is forwarded as is",
                                            subject));
        return;
    }
    if (to.scheme == backend_scheme::unix_socket) {
        auto path = expand_path(to.socket_path.string(), ctx_.env(), ctx_.base_dir());
        if (!path.ok()) {
            ctx_.error(e->value_at, fmt::format("{}: {}", subject, path.error));
            return;
        }
        if (path.value.native().size() > max_socket_path) {
            ctx_.error(e->value_at,
                       fmt::format("{} socket path '{}' is too long ({} bytes; at most {})",
                                   subject, path.value.string(), path.value.native().size(),
                                   max_socket_path));
            return;
        }
        to.socket_path = std::move(path.value);
    } else if (!cfg_.allow_remote_backends && !is_loopback(to.host)) {
        ctx_.error(e->value_at,
                   fmt::format("{}backend '{}' is not on this machine (127.0.0.0/8, ::1, localhost "
                               "or unix:); set allow_remote_backends: true to allow it",
                               prefix, *text));
        return;
    }
    r.to = std::move(to);
}

void loader::check_not_own_listener(const route& r, const source_location& to_at,
                                    const std::string& prefix)
{
    // A request that comes back to the same route comes back again and again: each hop
    // holds a connection until the descriptors run out. It comes back when its Host is kept
    // (or set to a name the route serves) and its path still falls under the route: kept as
    // it is, or under a base path that the route's own path covers (`/x` -> `/api/x` ->
    // `/api/api/x`...). Another Host (`host_header: backend`, or another route's name) or a
    // stripped prefix, which shortens the path at each hop, may be a deliberate alias.
    if (r.to.scheme == backend_scheme::unix_socket || r.to.port == 0) {
        return;
    }
    const auto serves_own_host = [&r] {
        if (r.host_header == host_header_policy::preserve) {
            return true;
        }
        if (r.host_header != host_header_policy::literal) {
            return false;
        }
        const auto host = uri::normalize_host(r.host_header_value).value_or("");
        return r.is_wildcard() ? host.ends_with(r.host.substr(1)) : host == r.host;
    };
    const auto& base = r.to.base_path;
    const bool path_comes_back =
        base.empty() ? !(r.strip_prefix && r.path != "/")
                     : r.path == "/" || base == r.path || base.starts_with(r.path + "/");
    if (!serves_own_host() || !path_comes_back) {
        return;
    }
    std::vector<std::string> addresses;
    if (r.to.host == "localhost") {
        addresses = {"127.0.0.1", "::1", "0.0.0.0", "::"};
    } else {
        addresses = {r.to.host, r.to.host.find(':') == std::string::npos ? "0.0.0.0" : "::"};
    }
    for (const auto& address : addresses) {
        const auto listener = bound_.find(std::pair(address, r.to.port));
        if (listener == bound_.end()) {
            continue;
        }
        const auto& own = listener->second;
        ctx_.error(to_at, fmt::format("{}'to' {} is portico's own listener '{}'{}: each request "
                                      "would come back to this route without end; point it at "
                                      "your dev server's port",
                                      prefix, r.to.text, own.text,
                                      own.line == 0 ? std::string(" (the default)")
                                                    : fmt::format(" (line {})", own.line)));
        return;
    }
}

void loader::read_host_header(const entry& e, const std::string& prefix, route& r)
{
    const auto text = read_scalar(ctx_, e, subject_of(prefix, "host_header"),
                                  "preserve, backend or a host[:port]");
    if (!text) {
        return;
    }
    // The words in any case: "Preserve" as a literal Host would be a silent surprise.
    const auto word = uri::to_lower(*text);
    if (word == "preserve") {
        r.host_header = host_header_policy::preserve;
    } else if (word == "backend") {
        r.host_header = host_header_policy::backend;
    } else if (auto literal = parse_host_header_value(*text); literal.ok()) {
        r.host_header = host_header_policy::literal;
        r.host_header_value = std::move(literal.value);
    } else {
        ctx_.error(e.value_at, prefix + literal.error);
    }
}

void loader::read_headers(const entry& e, const std::string& prefix, route& r)
{
    const auto m = mapping::read(
        ctx_, e, {header_keys, prefix, "headers", "a mapping with 'request' and 'response'", true});
    if (!m) {
        return;
    }
    if (const auto* request = m->find("request")) {
        read_header_rules(*request, prefix, "headers.request", r.request_headers);
    }
    if (const auto* response = m->find("response")) {
        read_header_rules(*response, prefix, "headers.response", r.response_headers);
    }
}

void loader::read_header_rules(const entry& e, const std::string& prefix, const std::string& name,
                               header_rules& rules)
{
    const auto m = mapping::read(
        ctx_, e, {header_rule_keys, prefix, name, "a mapping with 'set' and 'remove'", true});
    if (!m) {
        return;
    }
    if (const auto* set = m->find("set")) {
        read_header_set(*set, prefix, name + ".set", rules);
    }
    if (const auto* remove = m->find("remove")) {
        const auto section = name + ".remove";
        const auto subject = subject_of(prefix, section);
        constexpr std::string_view expected = "a list of header names";
        const auto items = read_list(ctx_, *remove, subject, expected);
        for (std::size_t i = 0; items && i < items->size(); ++i) {
            const auto& item = (*items)[i];
            const auto header = read_scalar(ctx_, item, subject, expected);
            if (header && check_header_name(*header, item.value_at, prefix, section, "removed")) {
                rules.remove.push_back(*header);
            }
        }
    }
}

void loader::read_header_set(const entry& e, const std::string& prefix, const std::string& section,
                             header_rules& rules)
{
    const auto values =
        mapping::read(ctx_, e, {{}, prefix, section, "a mapping of header names to values", true});
    if (!values) {
        return;
    }
    std::map<std::string, int> first_line;
    for (const auto& [header, value] : values->entries()) {
        if (!check_header_name(header, value.key_at, prefix, section, "set")) {
            continue;
        }
        const auto subject = subject_of(prefix, section + "." + header);
        const auto text =
            read_scalar(ctx_, value, subject, "a string (use \"\" for an empty value)");
        if (!text) {
            continue;
        }
        // RFC 9110 §5.5: CR, LF and NUL would split or truncate the header line.
        if (text->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
            ctx_.error(value.value_at, fmt::format("{} must not contain CR, LF or NUL", subject));
            continue;
        }
        const auto [earlier, inserted] =
            first_line.emplace(uri::to_lower(header), value.key_at.line);
        if (!inserted) {
            ctx_.error(value.key_at, fmt::format("{}header '{}' in '{}' is already set at line {} "
                                                 "(header names ignore case)",
                                                 prefix, header, section, earlier->second));
            continue;
        }
        rules.set.emplace_back(header, *text);
    }
}

bool loader::check_header_name(const std::string& header, const source_location& at,
                               const std::string& prefix, std::string_view section,
                               std::string_view verb)
{
    if (!uri::is_token(header)) {
        ctx_.error(at, fmt::format("{}header name '{}' in '{}' is not a valid RFC 9110 token",
                                   prefix, header, section));
        return false;
    }
    if (const auto reason = managed_header_reason(header); !reason.empty()) {
        ctx_.error(at, fmt::format("{}header '{}' in '{}' cannot be {}: {}", prefix, header,
                                   section, verb, reason));
        return false;
    }
    return true;
}

void loader::check_route_conflicts(const route& r, const source_location& host_at,
                                   bool path_known)
{
    const auto prefix = fmt::format("route {}: ", r.number);
    if (!r.is_wildcard() && r.host == cfg_.admin) {
        ctx_.error(host_at, fmt::format("{}host '{}' is the admin host; choose another host or "
                                        "change 'admin'",
                                        prefix, r.host));
        return;
    }
    const auto [seen, first] = hosts_.emplace(r.host, route_seen{r.number, r.tls_passthrough});
    if (!first && seen->second.passthrough != r.tls_passthrough) {
        // SNI picks a passthrough route before any decryption, so the other route could
        // never be reached over TLS.
        ctx_.error(r.where, fmt::format("{}host '{}' cannot have both tls_passthrough and "
                                        "regular routes (see route {})",
                                        prefix, r.host, seen->second.number));
        return;
    }
    if (!path_known) {
        return;
    }
    const auto [earlier, inserted] = host_paths_.emplace(std::pair(r.host, r.path), r.number);
    if (!inserted) {
        ctx_.error(r.where, fmt::format("{}host '{}' with path '{}' is already routed by route {}",
                                        prefix, r.host, r.path, earlier->second));
    }
}

void loader::warn_outside_permitted(const std::string& host, const source_location& at,
                                    std::string_view prefix)
{
    // The local CA can sign loopback IP addresses whatever its permitted names.
    if (is_ip_literal(host)) {
        return;
    }
    const std::string_view base = host.starts_with("*.") ? std::string_view(host).substr(2) : host;
    const auto& permitted = cfg_.tls.ca_permitted_names;
    if (permitted.empty()) {
        return; // every name given was refused, and said so
    }
    const bool permitted_name = std::any_of(permitted.begin(), permitted.end(),
                                            [&](const auto& name) { return is_under(base, name); });
    const auto& certificates = cfg_.tls.certificates;
    const bool has_certificate =
        std::any_of(certificates.begin(), certificates.end(), [&](const auto& c) {
            return std::any_of(c.hosts.begin(), c.hosts.end(),
                               [&](const auto& name) { return certificate_covers(name, host); });
        });
    if (!permitted_name && !has_certificate) {
        ctx_.warning(at, fmt::format("{}host '{}' is outside tls.ca_permitted_names ({}): HTTPS "
                                     "for it needs a certificate in tls.certificates",
                                     prefix, host, join(permitted)));
    }
}

} // namespace

config read_config(context& ctx, const node& root)
{
    loader walk(ctx);
    return walk.load(root);
}

} // namespace portico::config::detail
