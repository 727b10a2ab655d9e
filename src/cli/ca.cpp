#include "cli/ca.hpp"

#include "cli/config_source.hpp"
#include "cli/subprocess.hpp"
#include "cli/trust_stores.hpp"
#include "portico/cli/app.hpp"
#include "portico/core/log.hpp"
#include "portico/tls/certificates.hpp"

#include <fmt/format.h>

#include <pwd.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace portico::cli {
namespace {

namespace fs = std::filesystem;
using outcome = store_result::outcome;

constexpr std::string_view ca_file = "ca.pem";

/// Prints a line to stdout at once: a sudo password prompt or a slow tool may follow it.
template <typename... Args> void say(fmt::format_string<Args...> format, Args&&... args)
{
    fmt::print(format, std::forward<Args>(args)...);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

const passwd* account()
{
    return ::getpwuid(::geteuid());
}

/// The login name, found as tls finds it for the CA's subject (the account, then USER).
std::string login_name()
{
    if (const auto* pw = account(); pw != nullptr && pw->pw_name != nullptr) {
        return pw->pw_name;
    }
    if (const char* user = std::getenv("USER"); user != nullptr) {
        return user;
    }
    return std::to_string(::geteuid());
}

/// `name` with every character a file name or certutil argument could trip over replaced.
std::string file_name_safe(std::string_view name)
{
    std::string safe(name);
    for (auto& c : safe) {
        const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!plain) {
            c = '_';
        }
    }
    return safe;
}

std::string host_name()
{
    std::array<char, 256> name{};
    if (::gethostname(name.data(), name.size() - 1) != 0) {
        return "localhost";
    }
    return name.data();
}

/// HOME as the user set it (the tests point it elsewhere), else the account's home.
fs::path home_directory()
{
    if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/') {
        return home;
    }
    if (const auto* pw = account(); pw != nullptr && pw->pw_dir != nullptr) {
        return pw->pw_dir;
    }
    return "/";
}

/**
 * The name the stores know the CA by (certutil nickname): the CA's subject CN,
 * "portico local CA (user@host)". It stays the same from run to run, so that install
 * recognises its earlier work and uninstall finds it, and a user reading a browser's list
 * sees whose CA it is.
 * TODO(cli): read the CN from the certificate once tls::certificate_authority exposes it;
 * until then this repeats tls's recipe (including its 64-character cap, RFC 5280 ub-common-name).
 */
std::string store_name()
{
    constexpr std::size_t max_common_name = 64;
    return fmt::format("portico local CA ({}@{})", login_name(), host_name())
        .substr(0, max_common_name);
}

std::unique_ptr<tls::certificate_authority> open_authority(const config::tls_settings& tls)
{
    const bool existed = fs::exists(tls.ca_dir / ca_file);
    std::string error;
    auto ca = tls::certificate_authority::open(tls.ca_dir, tls.ca_permitted_names, error);
    if (!ca) {
        // tls names the damaged file and says what to do about it.
        fmt::print(stderr, "portico: cannot use the local CA: {}\n", error);
        return nullptr;
    }
    if (!existed) {
        fmt::print(stderr, "portico: created a new local CA in {}\n", tls.ca_dir.string());
    }
    return ca;
}

std::string_view outcome_word(trust_action action, outcome what)
{
    const bool install = action == trust_action::install;
    switch (what) {
    case outcome::changed:
        return install ? "installed" : "removed";
    case outcome::unchanged:
        return install ? "already installed" : "not installed";
    case outcome::skipped:
        return "skipped";
    case outcome::failed:
        return "failed";
    }
    return "failed";
}

void print_result(trust_action action, const store_result& r)
{
    const auto word = outcome_word(action, r.what);
    if (r.what == outcome::failed) {
        fmt::print(stderr, "{}: {}: {}\n", word, r.store, r.detail);
        std::fflush(stderr);
        return;
    }
    if (r.detail.empty()) {
        say("{}: {}", word, r.store);
    } else {
        say("{}: {} ({})", word, r.store, r.detail);
    }
}

/// The variables for tools that keep their own CA list, each after a line saying why.
void print_environment(const fs::path& ca_pem, const trust_summary& summary)
{
    // The last three *replace* a tool's bundle, so it must hold the public roots too: the
    // system bundle does once the CA is in it; ca.pem alone breaks every public site.
    const auto bundle = summary.system_bundle.value_or(ca_pem).string();
    say("");
    say("Tools that keep their own CA list need these variables (e.g. in your shell profile):");
    if (!summary.system_bundle) {
        say("# No system bundle holds the CA, so the last three name ca.pem alone: tools that "
            "use them then fail on public HTTPS sites.");
    }
    const auto variable = [](std::string_view name, const std::string& value,
                             std::string_view why) {
        say("# {}", why);
        say("export {}", format_command({fmt::format("{}={}", name, value)}));
    };
    variable("NODE_EXTRA_CA_CERTS", ca_pem.string(),
             "Node.js adds this file to its built-in CAs (it does not read the system store)");
    variable("REQUESTS_CA_BUNDLE", bundle, "Python requests uses this bundle instead of certifi's");
    variable("SSL_CERT_FILE", bundle,
             "OpenSSL-based tools (Python's ssl module, Ruby, ...) use this bundle instead of "
             "their default");
    variable("CURL_CA_BUNDLE", bundle,
             "curl uses this bundle instead of the one it was built with");
}

int trust_command(trust_action action, const config::tls_settings& tls)
{
    std::string error;
    const char* selection = std::getenv("PORTICO_TRUST_STORES");
    auto stores = select_stores(selection != nullptr ? selection : "", error);
    if (!stores) {
        fmt::print(stderr, "portico: PORTICO_TRUST_STORES: {}\n", error);
        return exit_config;
    }
    // A CA directory deleted before its CA left the trust stores: the CA is gone, but stores
    // that know it by name (NSS databases, the Debian anchor file) still trust it.
    const bool ca_gone = action == trust_action::uninstall && !fs::exists(tls.ca_dir / ca_file);
    std::unique_ptr<tls::certificate_authority> authority;
    if (!ca_gone) {
        authority = open_authority(tls);
        if (!authority) {
            return exit_config;
        }
    }
    const ca_identity ca{ca_gone ? fs::absolute(tls.ca_dir / ca_file)
                                 : authority->certificate_path(),
                         ca_gone ? std::string() : authority->certificate_pem(), store_name(),
                         file_name_safe(login_name())};
    trust_context ctx;
    ctx.home = home_directory();
    ctx.is_root = ::geteuid() == 0;
    if (!ctx.is_root) {
        ctx.sudo = find_program("sudo");
    }
    ctx.stores = std::move(*stores);
    ctx.note = [](std::string_view text) { say("note: {}", text); };
    ctx.report = [action](const store_result& r) { print_result(action, r); };

    if (ca_gone) {
        say("no local CA in {}: removing what the trust stores still hold of {} by name",
            tls.ca_dir.string(), ca.name);
    } else {
        say("local CA: {} ({})", ca.certificate.string(), ca.name);
    }
    const auto summary = update_trust_stores(action, ca, ctx);
    if (action == trust_action::install) {
        print_environment(ca.certificate, summary);
    } else if (!ca_gone) {
        say("");
        say("The CA itself is kept in {}; delete that directory to discard it (portico then "
            "creates a new one, which must be trusted again).",
            tls.ca_dir.string());
        say("If you exported NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, SSL_CERT_FILE or "
            "CURL_CA_BUNDLE for portico, remove them too.");
    }
    return summary.failed ? exit_config : exit_ok;
}

} // namespace

int ca_command(ca_action action, const std::optional<std::filesystem::path>& cli_file)
{
    // This verb tells the user what it did in its own words; the info events of the modules
    // it calls (such as tls's ca_created) are meant for `run`'s log.
    log::configure(log::level::warn, log::format::text);
    const auto loaded = load_config(cli_file);
    if (!loaded) {
        return exit_config;
    }
    const auto& tls = loaded->value.tls;
    switch (action) {
    case ca_action::path: {
        const auto authority = open_authority(tls);
        if (!authority) {
            return exit_config;
        }
        say("{}", fs::absolute(authority->certificate_path()).string());
        return exit_ok;
    }
    case ca_action::install:
        return trust_command(trust_action::install, tls);
    case ca_action::uninstall:
        return trust_command(trust_action::uninstall, tls);
    }
    return exit_config;
}

} // namespace portico::cli
