#pragma once

// The local CA, certificates issued from it on demand, user-provided certificates, and the
// TLS contexts built from them. The only module that calls OpenSSL directly.

#include "portico/config/config.hpp"
#include "portico/core/net.hpp"

#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portico::tls {

/// Validity of issued leaf certificates, when they are renewed, and how many are kept.
struct issuance_policy {
    std::chrono::hours validity{24 * 90};      ///< 90 days
    std::chrono::hours renew_before{24 * 30};  ///< renewed when fewer than 30 days remain
    /// Leaves held in memory and in `leaves/`, the least recently issued or loaded dropped
    /// first. A wildcard route serves any name below it, and any web page can make a
    /// browser ask for random ones: without a bound each would stay, in memory and on disk.
    std::size_t max_leaves = 1000;
};

/**
 * The local certificate authority in `tls.ca_dir`: `ca.pem` (certificate), `ca-key.pem`
 * (ECDSA P-256 private key, mode 0600) and `ca.crl` (its revocation list) in a 0700 directory. Its certificate carries critical
 * X.509 name constraints: the DNS suffixes in `tls.ca_permitted_names` and the IP ranges
 * 127.0.0.0/8 and ::1/128, so a stolen key cannot sign for a real site.
 */
class certificate_authority {
public:
    /**
     * Loads the CA from `dir`, creating directory, key and certificate when none exist.
     * An existing but damaged, unreadable or inconsistent CA is an error (never replaced).
     * @return nullptr with `error` set on failure.
     */
    static std::unique_ptr<certificate_authority>
    open(const std::filesystem::path& dir, const std::vector<std::string>& permitted_names,
         std::string& error);

    ~certificate_authority();
    certificate_authority(const certificate_authority&) = delete;
    certificate_authority& operator=(const certificate_authority&) = delete;

    /// Absolute path of `ca.pem`.
    const std::filesystem::path& certificate_path() const noexcept;
    /// The CA certificate in PEM.
    const std::string& certificate_pem() const noexcept;
    /// The CA certificate, parsed (valid as long as this CA).
    X509* certificate() const noexcept;
    /// Absolute path of `ca.crl`, the CA's (empty) revocation list, kept current by `open`.
    const std::filesystem::path& crl_path() const noexcept;
    /// The `file://` URI of `ca.crl`, named by every issued leaf as its CRL distribution point.
    const std::string& crl_uri() const noexcept;
    /// True when the CA's name constraints permit this DNS name or IP literal.
    bool permits(std::string_view name) const;

    /// A certificate and key in PEM, with its expiry.
    struct leaf {
        std::string certificate_pem; ///< the leaf followed by the CA certificate
        std::string key_pem;
        std::chrono::system_clock::time_point not_after;
    };

    /**
     * Issues a leaf for `name` (SAN = that DNS name; for "localhost" also the IP SANs
     * 127.0.0.1 and ::1; an IP literal gets an IP SAN): ECDSA P-256, serverAuth, valid
     * `policy.validity` from one hour ago. Thread-safe.
     * @note Does not check `permits`: a leaf outside the name constraints is signed but fails
     * verification. Throws `std::runtime_error` if OpenSSL fails (out of memory, no entropy).
     */
    leaf issue(std::string_view name, const issuance_policy& policy = {}) const;

private:
    struct impl;
    explicit certificate_authority(std::unique_ptr<impl> p);
    std::unique_ptr<impl> impl_;
};

/**
 * Chooses the certificate for each TLS handshake and owns the server and client TLS
 * contexts. Leaf certificates are issued at the first ClientHello that names a served
 * host, kept in memory and in `ca_dir/leaves/` (reused after a restart, renewed when less
 * than `renew_before` remains), one per exact name even when two handshakes race for it.
 * User-provided certificates win over issued ones. Names that are not served get an
 * `unrecognized_name` alert and nothing is written. With no SNI, `localhost` is served.
 */
class certificate_manager {
public:
    /// Decides whether a name may get a certificate (a routed host, the admin host...).
    using name_filter = std::function<bool(std::string_view)>;

    /**
     * Opens the CA and loads user certificates (a missing or mismatched key is an error).
     * @return nullptr with `error` set on failure.
     */
    static std::unique_ptr<certificate_manager>
    create(const config::tls_settings& settings, name_filter served, std::string& error,
           const issuance_policy& policy = {});

    ~certificate_manager();

    /// Replaces the filter (on reload); thread-safe.
    void set_name_filter(name_filter served);

    /**
     * The server context: TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers only, session
     * resumption (tickets and cache), ALPN `http/1.1`, certificate chosen per SNI.
     */
    ssl::context& server_context() noexcept;

    /// A client context for https backends: verified against the system store plus the
    /// local CA, or not verified at all.
    ssl::context& client_context(bool verify) noexcept;

    /// The CA this manager issues from.
    const certificate_authority& authority() const noexcept;

    /// Leaf certificates issued (not loaded from disk) since start, for metrics.
    std::uint64_t certificates_issued() const noexcept;

private:
    struct impl;
    explicit certificate_manager(std::unique_ptr<impl> p);
    std::unique_ptr<impl> impl_;
};

/// What loading the `tls.certificates` entries found, each at its entry in the file.
struct user_certificate_report {
    /// A file that does not load, a key that does not belong to its certificate.
    std::vector<config::diagnostic> errors;
    /// A host that its certificate does not name: clients would refuse it there.
    std::vector<config::diagnostic> warnings;
};

/// Loads each user certificate and key as serving would, without opening the CA, so that
/// `check` and a reload refuse what `run` would (see `certificate_manager::create`).
user_certificate_report check_user_certificates(const config::tls_settings& settings);

/**
 * The DNS suffixes the CA already in `ca_dir` was created with (its name constraints, which
 * never change); nullopt when there is no CA there yet, its certificate cannot be read, or
 * it constrains no DNS name.
 * Creates nothing.
 */
std::optional<std::vector<std::string>> existing_ca_permitted_names(const std::filesystem::path& ca_dir);

/**
 * Why `ca_dir` cannot hold the local CA: it holds other files and no CA (a project, a home
 * directory), which would be made private and given the key. "" when it can.
 */
std::string foreign_ca_directory(const std::filesystem::path& ca_dir);

/**
 * What is wrong with the CA already in `ca_dir` (a file missing, damaged, expired, a key
 * that is not the certificate's), as `certificate_authority::open` would find it, without
 * changing anything there; "" when there is none yet or it is sound.
 */
std::string damaged_ca(const std::filesystem::path& ca_dir);

/// The server name (SNI) the client sent in this connection's handshake, lower case without
/// a trailing dot; "" when it sent none (the certificate for `localhost` was served then).
/// Pass `stream.native_handle()` of an `ssl::stream` after its handshake.
std::string requested_server_name(SSL* connection);

/**
 * Initialises OpenSSL and fetches, from its providers, what a TLS server context and the
 * CA's keys use. The first of each costs a few million instructions (the configuration
 * file, error strings, every cipher and algorithm looked up by name) and later ones reuse
 * them; called on a thread of its own while the configuration is read, it takes that work
 * off the path to `portico ready`. Thread-safe. What fails here is left for the certificate
 * manager to meet and report.
 */
void prepare_openssl() noexcept;

/// Writes `data` to `path` atomically (temporary file in the same directory + rename) with
/// the given mode; no temporary file is left behind on failure. Returns an error message,
/// and the failed call's errno in `failed_errno` when given.
std::string write_file_atomically(const std::filesystem::path& path, std::string_view data,
                                  unsigned mode, int* failed_errno = nullptr);

} // namespace portico::tls
