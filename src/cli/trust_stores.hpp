#pragma once

// Adding the local CA to, and removing it from, the trust stores that browsers and tools read:
// the system store (Debian/Ubuntu ca-certificates, p11-kit on Fedora/RHEL/Arch, the macOS
// login keychain) and the NSS databases of Chromium and Firefox. Each store is changed only
// through its own tool, run without a shell; what is already in the right state is left alone,
// so both directions are idempotent.

#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace portico::cli {

/// The CA as the trust stores know it.
struct ca_identity {
    std::filesystem::path certificate; ///< absolute path of `ca.pem`
    std::string pem; ///< the certificate in PEM; empty on uninstall when ca.pem is gone
    std::string name;                  ///< stable per CA: certutil nickname, keychain label
    std::string user;                  ///< login name, safe in a file name
};

/// Which way the stores are changed.
enum class trust_action { install, uninstall };

/// What happened to one store.
struct store_result {
    /// The outcome, worded per action by the caller ("installed" or "removed", ...).
    enum class outcome {
        changed,   ///< installed or removed now
        unchanged, ///< already installed, or not installed
        skipped,   ///< not attempted; `detail` says why
        failed,    ///< attempted and failed; `detail` holds the command and its stderr
    };
    outcome what = outcome::unchanged;
    std::string store;  ///< e.g. "Chromium NSS database (/home/me/.pki/nssdb)"
    std::string detail; ///< why it was skipped or failed; a remark when it changed
};

/// The stores PORTICO_TRUST_STORES may name.
inline constexpr std::string_view store_system = "system";
inline constexpr std::string_view store_nss = "nss";

/**
 * The store kinds named in `selection` (PORTICO_TRUST_STORES, comma-separated, like mkcert's
 * TRUST_STORES); every kind when it is empty.
 * @return nullopt with `error` set when it names an unknown kind.
 */
std::optional<std::set<std::string, std::less<>>> select_stores(std::string_view selection,
                                                                std::string& error);

/// Where and as whom the stores are changed, and where progress goes.
struct trust_context {
    std::filesystem::path home; ///< the user's home: NSS databases, keychain
    bool is_root = false;
    std::optional<std::filesystem::path> sudo; ///< used for the system store when not root
    std::set<std::string, std::less<>> stores; ///< the selected kinds (`store_system`, ...)
    /// Says what is about to happen before a command that may ask for a password.
    std::function<void(std::string_view)> note;
    /// Called once per store, as soon as it is done.
    std::function<void(const store_result&)> report;
};

/// What the caller needs after every store was handled.
struct trust_summary {
    bool failed = false; ///< some attempted store failed
    /// A system-wide PEM bundle that now holds the CA and the public roots, if there is one.
    std::optional<std::filesystem::path> system_bundle;
};

/**
 * Installs `ca` into, or removes it from, every selected store that exists on this machine,
 * reporting one result per store through `ctx.report`. The system store is changed through
 * sudo (announced through `ctx.note`) when not root; without root or sudo it is skipped.
 */
trust_summary update_trust_stores(trust_action action, const ca_identity& ca,
                                  const trust_context& ctx);

} // namespace portico::cli
