#include "cli/trust_stores.hpp"

#include "cli/subprocess.hpp"

#include <fmt/format.h>

#include <sys/utsname.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

namespace portico::cli {
namespace {

namespace fs = std::filesystem;
using outcome = store_result::outcome;
using command = std::vector<std::string>;

// Debian/Ubuntu: update-ca-certificates adds every *.crt here to the bundle.
constexpr std::string_view debian_anchor_dir = "/usr/local/share/ca-certificates";
constexpr std::string_view debian_bundle = "/etc/ssl/certs/ca-certificates.crt";
constexpr std::string_view debian_links_dir = "/etc/ssl/certs";
// Fedora/RHEL, then Arch: the PEM bundles p11-kit extracts from its anchors.
constexpr std::array<std::string_view, 2> p11kit_bundles = {"/etc/pki/tls/certs/ca-bundle.crt",
                                                            "/etc/ssl/certs/ca-certificates.crt"};
// "C,,": a CA trusted to issue TLS server certificates, nothing else (certutil -A -t).
constexpr std::string_view nss_trust_flags = "C,,";
// Deleting by nickname removes one certificate per call; bounded in case certutil misbehaves.
constexpr int max_nss_deletions = 8;

std::string trim(std::string_view text)
{
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(" \t\r\n");
    return std::string(text.substr(first, last - first + 1));
}

/**
 * The base64 bodies of the PEM certificates in `text`, whitespace removed, so that
 * certificates compare equal whatever their line endings (certutil writes CRLF).
 */
std::vector<std::string> certificate_bodies(std::string_view text)
{
    constexpr std::string_view begin = "-----BEGIN CERTIFICATE-----";
    constexpr std::string_view end = "-----END CERTIFICATE-----";
    std::vector<std::string> bodies;
    for (auto at = text.find(begin); at != std::string_view::npos; at = text.find(begin, at)) {
        const auto from = at + begin.size();
        const auto to = text.find(end, from);
        if (to == std::string_view::npos) {
            break;
        }
        std::string body;
        std::copy_if(text.begin() + static_cast<std::ptrdiff_t>(from),
                     text.begin() + static_cast<std::ptrdiff_t>(to), std::back_inserter(body),
                     [](char c) { return std::isspace(static_cast<unsigned char>(c)) == 0; });
        bodies.push_back(std::move(body));
        at = to + end.size();
    }
    return bodies;
}

bool holds_certificate(std::string_view text, const ca_identity& ca)
{
    const auto ours = certificate_bodies(ca.pem);
    if (ours.empty()) {
        return false;
    }
    const auto theirs = certificate_bodies(text);
    return std::find(theirs.begin(), theirs.end(), ours.front()) != theirs.end();
}

std::string read_file(const fs::path& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    return content.str();
}

bool file_holds_certificate(const fs::path& path, const ca_identity& ca)
{
    std::error_code ec;
    return fs::is_regular_file(path, ec) && holds_certificate(read_file(path), ca);
}

bool path_exists(const fs::path& path)
{
    std::error_code ec;
    return fs::exists(path, ec);
}

/// The program's absolute path when installed, else its bare name (exec then says why).
std::string program(std::string_view name)
{
    const auto found = find_program(name);
    return found ? found->string() : std::string(name);
}

/**
 * Runs one command of a store's update. On failure `failure` gets the command, how it ended
 * and what it said, which is what the user needs to act on it.
 */
subprocess_result run_step(const command& argv, std::optional<std::string>& failure)
{
    auto r = run_subprocess(argv);
    if (!r.succeeded()) {
        failure = fmt::format("'{}' failed ({})", format_command(argv), r.describe());
        if (const auto said = trim(r.err.empty() ? r.out : r.err); !said.empty()) {
            *failure += ": " + said;
        }
    }
    return r;
}

bool is_macos()
{
    utsname name{};
    return ::uname(&name) == 0 && std::string_view(name.sysname) == "Darwin";
}

/// A system-wide store, described as data so that one driver handles every platform.
struct system_store {
    std::string label;
    bool needs_root = true;
    /// True when the CA is in the store: install's goal.
    std::function<bool()> holds_ca;
    /// True when uninstall has something to remove; `holds_ca` when not set.
    std::function<bool()> has_traces;
    std::function<std::vector<command>()> install_steps;
    std::function<std::vector<command>()> uninstall_steps;
    /// The PEM bundle that shows the store's content to OpenSSL-based tools.
    std::optional<fs::path> bundle;
};

system_store debian_store(const ca_identity& ca, const fs::path& update_tool)
{
    const auto anchor = fs::path(debian_anchor_dir) / fmt::format("portico-{}.crt", ca.user);
    system_store s;
    s.label = fmt::format("system store ({})", anchor.string());
    s.bundle = fs::path(debian_bundle);
    const auto link = fs::path(debian_links_dir) / fmt::format("portico-{}.pem", ca.user);
    // The copy alone trusts nothing until update-ca-certificates rebuilt the bundle, so
    // install needs both; for removal the copy or its link marks the CA as ours, whichever
    // certificate it holds (an older CA of this user is removed too).
    s.holds_ca = [ca, anchor] {
        return file_holds_certificate(anchor, ca) &&
               file_holds_certificate(fs::path(debian_bundle), ca);
    };
    s.has_traces = [anchor, link] {
        std::error_code ec;
        return path_exists(anchor) || fs::is_symlink(link, ec);
    };
    s.install_steps = [ca, anchor, update_tool] {
        return std::vector<command>{
            {program("install"), "-m", "0644", ca.certificate.string(), anchor.string()},
            {update_tool.string()}};
    };
    s.uninstall_steps = [anchor, update_tool] {
        // Without --fresh the tool rebuilds the bundle but keeps the links to the removed
        // file in /etc/ssl/certs (it prunes orphans only when it added or removed something
        // itself), and OpenSSL's hashed lookup would keep finding them.
        return std::vector<command>{{program("rm"), "-f", anchor.string()},
                                    {update_tool.string(), "--fresh"}};
    };
    return s;
}

system_store p11kit_store(const ca_identity& ca, const fs::path& trust_tool)
{
    system_store s;
    s.label = "system store (p11-kit trust anchors)";
    for (const auto candidate : p11kit_bundles) {
        if (path_exists(fs::path(candidate))) {
            s.bundle = fs::path(candidate);
            break;
        }
    }
    s.holds_ca = [ca, bundle = s.bundle] { return bundle && file_holds_certificate(*bundle, ca); };
    // `trust anchor` normally refreshes the extracted bundles itself; update-ca-trust makes
    // sure where the distribution ships it.
    const auto with_refresh = [](command step) {
        std::vector<command> steps{std::move(step)};
        if (const auto refresh = find_program("update-ca-trust")) {
            steps.push_back({refresh->string()});
        }
        return steps;
    };
    s.install_steps = [ca, trust_tool, with_refresh] {
        return with_refresh({trust_tool.string(), "anchor", "--store", ca.certificate.string()});
    };
    s.uninstall_steps = [ca, trust_tool, with_refresh] {
        return with_refresh({trust_tool.string(), "anchor", "--remove", ca.certificate.string()});
    };
    return s;
}

/**
 * The SHA-1 hash that `security find-certificate -a -Z -p` prints before our certificate:
 * deleting by hash, unlike by name, cannot hit another certificate.
 */
std::string keychain_hash(std::string_view listing, const ca_identity& ca)
{
    constexpr std::string_view hash_label = "SHA-1 hash: ";
    const auto ours = certificate_bodies(ca.pem);
    std::string hash;
    std::istringstream in{std::string(listing)};
    std::string pem;
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with(hash_label)) {
            hash = trim(line.substr(hash_label.size()));
            pem.clear();
            continue;
        }
        pem += line + '\n';
        if (line.starts_with("-----END CERTIFICATE-----") && !ours.empty() &&
            certificate_bodies(pem) == std::vector<std::string>{ours.front()}) {
            return hash;
        }
    }
    return {};
}

// Not exercised by the Linux tests; kept compiling everywhere so that it cannot rot unseen.
system_store macos_store(const ca_identity& ca, const fs::path& security_tool, const fs::path& home)
{
    const auto keychain = home / "Library/Keychains/login.keychain-db";
    const auto listing = [security_tool, keychain](bool with_hashes) {
        command argv{security_tool.string(), "find-certificate", "-a", "-p"};
        if (with_hashes) {
            argv.emplace_back("-Z");
        }
        argv.push_back(keychain.string());
        return run_subprocess(argv).out;
    };
    system_store s;
    s.label = fmt::format("login keychain ({})", keychain.string());
    // The user's own trust settings need no root (macOS asks for confirmation itself).
    s.needs_root = false;
    s.holds_ca = [ca, listing] { return holds_certificate(listing(false), ca); };
    s.install_steps = [ca, security_tool, keychain] {
        return std::vector<command>{{security_tool.string(), "add-trusted-cert", "-r", "trustRoot",
                                     "-k", keychain.string(), ca.certificate.string()}};
    };
    s.uninstall_steps = [ca, security_tool, keychain, listing] {
        // -t also removes the trust settings add-trusted-cert made.
        return std::vector<command>{{security_tool.string(), "delete-certificate", "-t", "-Z",
                                     keychain_hash(listing(true), ca), keychain.string()}};
    };
    return s;
}

/// The system store of this machine, or nullopt with the reason there is none.
std::optional<system_store> detect_system_store(const ca_identity& ca, const trust_context& ctx,
                                                std::string& reason)
{
    if (is_macos()) {
        if (const auto security = find_program("security")) {
            return macos_store(ca, *security, ctx.home);
        }
    }
    const auto update_tool = find_program("update-ca-certificates");
    if (update_tool && fs::is_directory(fs::path(debian_anchor_dir))) {
        return debian_store(ca, *update_tool);
    }
    if (const auto trust_tool = find_program("trust")) {
        return p11kit_store(ca, *trust_tool);
    }
    reason = fmt::format("no supported store: neither update-ca-certificates with {}, nor "
                         "p11-kit's trust, nor macOS security was found",
                         debian_anchor_dir);
    return std::nullopt;
}

store_result update_system_store(trust_action action, const ca_identity& ca,
                                 const trust_context& ctx, trust_summary& summary)
{
    std::string reason;
    const auto store = detect_system_store(ca, ctx, reason);
    if (!store) {
        return {outcome::skipped, "system store", reason};
    }
    const bool install = action == trust_action::install;
    if (!install && ca.pem.empty() && !store->has_traces) {
        // This store is searched by the certificate itself, and there is none to search with.
        return {outcome::skipped, store->label,
                "ca.pem is gone, so portico's certificate cannot be told apart here"};
    }
    const auto is_done = [&] {
        if (install) {
            return store->holds_ca();
        }
        return !(store->has_traces ? store->has_traces() : store->holds_ca());
    };
    const auto note_bundle = [&] {
        if (install && store->bundle && file_holds_certificate(*store->bundle, ca)) {
            summary.system_bundle = store->bundle;
        }
    };
    if (is_done()) {
        note_bundle();
        return {outcome::unchanged, store->label, {}};
    }

    auto steps = install ? store->install_steps() : store->uninstall_steps();
    command prefix;
    if (store->needs_root && !ctx.is_root) {
        if (!ctx.sudo) {
            // Not "run portico as root": root's HOME would give it another CA directory.
            std::vector<std::string> lines;
            for (const auto& step : steps) {
                lines.push_back(format_command(step));
            }
            return {outcome::skipped, store->label,
                    fmt::format("root is needed and sudo is not installed; as root, run: {}",
                                fmt::join(lines, " && "))};
        }
        prefix.push_back(ctx.sudo->string());
    }
    for (auto& step : steps) {
        step.insert(step.begin(), prefix.begin(), prefix.end());
        if (!prefix.empty() && ctx.note) {
            ctx.note(fmt::format("running through sudo, which may ask for your password: {}",
                                 format_command(step)));
        }
        std::optional<std::string> failure;
        if (!run_step(step, failure).succeeded()) {
            return {outcome::failed, store->label, std::move(*failure)};
        }
    }
    if (!is_done()) {
        return {outcome::failed, store->label,
                install ? "the commands succeeded but the store does not hold the CA"
                        : "the commands succeeded but the store still holds the CA"};
    }
    note_bundle();
    return {outcome::changed, store->label, {}};
}

/// An NSS certificate database (`cert9.db`, SQLite format) used by a browser.
struct nss_database {
    std::string label;
    fs::path dir;

    std::string spec() const { return "sql:" + dir.string(); }
};

/// The Firefox profiles that hold a certificate database, sorted for a stable output.
std::vector<fs::path> firefox_profiles(const fs::path& home)
{
    std::vector<fs::path> profiles;
    for (const auto& root :
         {home / ".mozilla/firefox", home / "snap/firefox/common/.mozilla/firefox"}) {
        std::error_code ec;
        for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
            if (path_exists(it->path() / "cert9.db")) {
                profiles.push_back(it->path());
            }
        }
    }
    std::sort(profiles.begin(), profiles.end());
    return profiles;
}

/// True when a `certutil -L` listing has a line for `nickname` (name, spaces, trust flags).
bool lists_nickname(std::string_view listing, std::string_view nickname)
{
    std::istringstream in{std::string(listing)};
    for (std::string line; std::getline(in, line);) {
        if (!line.starts_with(nickname) || line.size() == nickname.size() ||
            line[nickname.size()] != ' ') {
            continue;
        }
        // What follows the nickname is only the trust flags, which contain no space.
        const auto rest = trim(std::string_view(line).substr(nickname.size()));
        if (rest.find(' ') == std::string::npos) {
            return true;
        }
    }
    return false;
}

class nss_updater {
public:
    nss_updater(fs::path tool, const ca_identity& ca) : tool_(std::move(tool)), ca_(ca) {}

    store_result install(const nss_database& db)
    {
        failure_.reset();
        // Only Chromium's shared database can be missing: profiles are found by their file.
        if (!path_exists(db.dir / "cert9.db")) {
            std::error_code ec;
            fs::create_directories(db.dir, ec);
            fs::permissions(db.dir, fs::perms::owner_all, ec);
            if (!run({"-N", "--empty-password", "-d", db.spec()})) {
                return failed(db);
            }
        }
        const auto state = lookup(db);
        if (!state) {
            return failed(db);
        }
        std::string remark;
        if (*state == presence::same) {
            return {outcome::unchanged, db.label, {}};
        }
        if (*state == presence::other) {
            // Same nickname, other certificate: an earlier CA of this user, now replaced.
            if (!remove_all(db)) {
                return failed(db);
            }
            remark = "replaced an older portico CA";
        }
        if (!run({"-A", "-d", db.spec(), "-n", ca_.name, "-t", std::string(nss_trust_flags), "-i",
                  ca_.certificate.string()})) {
            return failed(db);
        }
        return {outcome::changed, db.label, remark};
    }

    store_result uninstall(const nss_database& db)
    {
        failure_.reset();
        if (!path_exists(db.dir / "cert9.db")) {
            return {outcome::unchanged, db.label, {}};
        }
        const auto state = lookup(db);
        if (!state) {
            return failed(db);
        }
        if (*state == presence::absent) {
            return {outcome::unchanged, db.label, {}};
        }
        if (!remove_all(db)) {
            return failed(db);
        }
        return {outcome::changed, db.label, {}};
    }

private:
    enum class presence { absent, same, other };

    bool run(command args, std::string* out = nullptr)
    {
        command argv{tool_.string()};
        argv.insert(argv.end(), std::make_move_iterator(args.begin()),
                    std::make_move_iterator(args.end()));
        const auto r = run_step(argv, failure_);
        if (out != nullptr) {
            *out = r.out;
        }
        return r.succeeded();
    }

    /// Whether the database has our nickname, and with which certificate; nullopt on error.
    std::optional<presence> lookup(const nss_database& db)
    {
        std::string listing;
        if (!run({"-L", "-d", db.spec()}, &listing)) {
            return std::nullopt;
        }
        if (!lists_nickname(listing, ca_.name)) {
            return presence::absent;
        }
        std::string pem;
        if (!run({"-L", "-d", db.spec(), "-n", ca_.name, "-a"}, &pem)) {
            return std::nullopt;
        }
        return holds_certificate(pem, ca_) ? presence::same : presence::other;
    }

    bool remove_all(const nss_database& db)
    {
        for (int i = 0; i < max_nss_deletions; ++i) {
            if (!run({"-D", "-d", db.spec(), "-n", ca_.name})) {
                return false;
            }
            const auto state = lookup(db);
            if (!state) {
                return false;
            }
            if (*state == presence::absent) {
                return true;
            }
        }
        failure_ =
            fmt::format("'{}' is still listed after {} deletions", ca_.name, max_nss_deletions);
        return false;
    }

    store_result failed(const nss_database& db)
    {
        return {outcome::failed, db.label, failure_.value_or("certutil failed")};
    }

    fs::path tool_;
    const ca_identity& ca_;
    std::optional<std::string> failure_;
};

void update_nss_databases(trust_action action, const ca_identity& ca, const trust_context& ctx,
                          trust_summary& summary)
{
    const auto report = [&](store_result r) {
        summary.failed = summary.failed || r.what == outcome::failed;
        ctx.report(r);
    };
    const auto tool = find_program("certutil");
    if (!tool) {
        report({outcome::skipped, "Chromium and Firefox NSS databases",
                "certutil not found; install libnss3-tools"});
        return;
    }
    std::vector<nss_database> databases;
    const auto chromium = ctx.home / ".pki/nssdb";
    databases.push_back({fmt::format("Chromium NSS database ({})", chromium.string()), chromium});
    for (const auto& profile : firefox_profiles(ctx.home)) {
        databases.push_back({fmt::format("Firefox profile ({})", profile.string()), profile});
    }

    nss_updater updater(*tool, ca);
    for (const auto& db : databases) {
        report(action == trust_action::install ? updater.install(db) : updater.uninstall(db));
    }
    if (databases.size() == 1) {
        report({outcome::skipped, "Firefox",
                "no profile with a cert9.db in ~/.mozilla/firefox or ~/snap/firefox"});
    }
}

} // namespace

std::optional<std::set<std::string, std::less<>>> select_stores(std::string_view selection,
                                                                std::string& error)
{
    std::set<std::string, std::less<>> stores;
    while (!selection.empty()) {
        const auto comma = selection.find(',');
        const auto name = trim(selection.substr(0, comma));
        selection =
            comma == std::string_view::npos ? std::string_view() : selection.substr(comma + 1);
        if (name.empty()) {
            continue;
        }
        if (name != store_system && name != store_nss) {
            error = fmt::format("unknown trust store '{}' (expected {} or {})", name, store_system,
                                store_nss);
            return std::nullopt;
        }
        stores.insert(name);
    }
    if (stores.empty()) {
        stores = {std::string(store_system), std::string(store_nss)};
    }
    return stores;
}

trust_summary update_trust_stores(trust_action action, const ca_identity& ca,
                                  const trust_context& ctx)
{
    trust_summary summary;
    const auto not_selected = [&](std::string_view store) {
        ctx.report({outcome::skipped, std::string(store), "not in PORTICO_TRUST_STORES"});
    };
    if (ctx.stores.contains(store_system)) {
        const auto r = update_system_store(action, ca, ctx, summary);
        summary.failed = summary.failed || r.what == outcome::failed;
        ctx.report(r);
    } else {
        not_selected("system store");
    }
    if (ctx.stores.contains(store_nss)) {
        update_nss_databases(action, ca, ctx, summary);
    } else {
        not_selected("Chromium and Firefox NSS databases");
    }
    return summary;
}

} // namespace portico::cli
