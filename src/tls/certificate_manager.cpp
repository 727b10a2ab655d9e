#include "portico/tls/certificates.hpp"

#include "portico/core/log.hpp"
#include "portico/core/uri.hpp"
#include "tls/files.hpp"
#include "tls/openssl.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <fmt/format.h>

#include <boost/system/system_error.hpp>

#include <algorithm>
#include <list>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <utility>

namespace portico::tls {
namespace {

/// Served when the client sends no SNI (and always served: SPEC.md, "TLS").
constexpr std::string_view default_name = "localhost";

/// TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AEAD ciphers only, so no CBC
/// (Lucky 13, POODLE-style padding oracles) and no static RSA key exchange (ROBOT). AES-GCM
/// first because it is hardware-accelerated on every machine a developer uses. TLS 1.3
/// keeps OpenSSL's default suites, which are all AEAD.
constexpr const char* tls12_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

constexpr const char* key_exchange_groups = "X25519:P-256:P-384";

/// ALPN protocols offered, in the wire format of RFC 7301 §3.1 (length-prefixed).
constexpr unsigned char alpn_protocols[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1',
                                            8, 'h', 't', 't', 'p', '/', '1', '.', '0'};

/// Distinguishes portico's sessions in OpenSSL's server session cache.
constexpr unsigned char session_id_context[] = {'p', 'o', 'r', 't', 'i', 'c', 'o'};

constexpr unsigned leaf_key_mode = 0600;
constexpr unsigned leaf_cert_mode = 0644;

/// The longest stem kept as it is: with "-key.pem" it stays within the 255 bytes a file
/// name may have, where a DNS name may have 253.
constexpr std::size_t max_plain_stem = 200;

/// A file name for a leaf of `name`. Names are DNS names or IP literals already; anything else
/// (':' in IPv6, a leading dot) becomes '_', so a name can never leave `leaves/`. A longer
/// name keeps its start and ends in a digest of the whole. Two names mapping to one file is
/// harmless: a loaded leaf must cover the name or it is re-issued.
std::string file_stem(std::string_view name)
{
    std::string stem(name);
    for (std::size_t i = 0; i < stem.size(); ++i) {
        const char c = stem[i];
        const bool plain = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                           c == '_' || (c == '.' && i > 0);
        if (!plain) {
            stem[i] = '_';
        }
    }
    if (stem.size() > max_plain_stem) {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int size = 0;
        check(EVP_Digest(name.data(), name.size(), digest, &size, EVP_sha256(), nullptr),
              "EVP_Digest");
        stem.resize(max_plain_stem - 33);
        stem += '-';
        for (unsigned int i = 0; i < 16; ++i) {
            fmt::format_to(std::back_inserter(stem), "{:02x}", digest[i]);
        }
    }
    return stem;
}

/// True when `leaf` names `name` in its subjectAltName (as a DNS name or an IP address).
bool covers(X509* leaf, const std::string& name)
{
    const int ok = parse_ip_literal(name).empty()
                       ? X509_check_host(leaf, name.data(), name.size(), 0, nullptr)
                       : X509_check_ip_asc(leaf, name.c_str(), 0);
    return ok == 1;
}

/// Whether `leaf` verifies as a server certificate under `ca` alone, name constraints
/// included: what a client trusting the local CA will check.
bool verifies_under(X509* ca, X509* leaf)
{
    const x509_store_ptr store(check(X509_STORE_new(), "X509_STORE_new"));
    check(X509_STORE_add_cert(store.get(), ca), "X509_STORE_add_cert");
    const x509_store_ctx_ptr verification(check(X509_STORE_CTX_new(), "X509_STORE_CTX_new"));
    check(X509_STORE_CTX_init(verification.get(), store.get(), leaf, nullptr),
          "X509_STORE_CTX_init");
    X509_STORE_CTX_set_purpose(verification.get(), X509_PURPOSE_SSL_SERVER);
    const bool ok = X509_verify_cert(verification.get()) == 1;
    ERR_clear_error();
    return ok;
}

/// What is wrong with the dates of a leaf outside its validity period now ("expired on
/// 2026-10-01: ..."); "" for one within it.
std::string validity_problem(const certified_key& key)
{
    const auto now = std::chrono::system_clock::now();
    const auto date = [](std::chrono::system_clock::time_point t) {
        const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
        std::tm tm{};
        ::gmtime_r(&seconds, &tm);
        return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    };
    if (key.not_after <= now) {
        return "expired on " + date(key.not_after) + ": clients will refuse it until it is replaced";
    }
    const auto not_before = to_time_point(X509_get0_notBefore(key.leaf.get()));
    if (not_before > now) {
        return "is not valid before " + date(not_before) + ": clients will refuse it until then";
    }
    return {};
}

/// Whether an SNI that is an address names one of the `localhost` leaf's own (its IP SANs).
/// RFC 6066 §3 allows no address there, yet some clients send one: those two get that leaf,
/// any other address is refused rather than given a leaf of its own.
bool is_default_leaf_address(std::string_view ip_literal)
{
    const std::string ip = parse_ip_literal(ip_literal);
    return !ip.empty() && (ip == parse_ip_literal("127.0.0.1") || ip == parse_ip_literal("::1"));
}

/// The host name in a ClientHello's server_name extension (RFC 6066 §3), as sent; "" when
/// there is none or it is malformed (the SNI callback then judges the handshake).
std::string_view hello_server_name(SSL* ssl)
{
    const unsigned char* data = nullptr;
    std::size_t size = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &data, &size) != 1 || size < 5) {
        return {};
    }
    // A list (length, 2 bytes) of entries: type (1 byte, 0 for host_name), length, name.
    const std::size_t list = (std::size_t{data[0]} << 8) | data[1];
    const std::size_t length = (std::size_t{data[3]} << 8) | data[4];
    if (list + 2 != size || data[2] != TLSEXT_NAMETYPE_host_name || length + 5 > size) {
        return {};
    }
    return {reinterpret_cast<const char*>(data + 5), length};
}

/// The SNI name of a handshake, normalised; "" when the client sent none.
std::string sni_of(const SSL* ssl)
{
    const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    return sni == nullptr ? std::string() : normalize_server_name(sni);
}

/// Contexts `prepare_openssl` made ahead, for the first certificate manager to take.
struct prepared_contexts {
    std::mutex mutex;
    std::vector<ssl::context> server;
    std::vector<ssl::context> client;
};

prepared_contexts& prepared()
{
    // Never destroyed: contexts nobody took are not freed after OpenSSL's own cleanup.
    static auto* const contexts = new prepared_contexts;
    return *contexts;
}

/// A context for `method`: one made ahead when there is one left, else a new one.
ssl::context prepared_context(ssl::context::method method)
{
    auto& p = prepared();
    if (method == ssl::context::tls_server || method == ssl::context::tls_client) {
        const std::lock_guard lock(p.mutex);
        auto& list = method == ssl::context::tls_server ? p.server : p.client;
        if (!list.empty()) {
            auto context = std::move(list.back());
            list.pop_back();
            return context;
        }
    }
    return ssl::context(method);
}

} // namespace

void prepare_openssl() noexcept
{
    try {
        OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, nullptr);
        // The first context fetches every cipher, digest and group from the providers;
        // these three are the ones the first certificate manager would make.
        ssl::context server(ssl::context::tls_server);
        ssl::context client_verified(ssl::context::tls_client);
        ssl::context client_unverified(ssl::context::tls_client);
        // The CA's keys are EC P-256, and reading its certificate and key goes through
        // OpenSSL's decoders, whose first use in a process fetches every provider's key
        // formats: a key of that kind, made, written and read back here, fetches the EC
        // methods and the decoders while the configuration is read.
        if (const pkey_ptr sample{EVP_EC_gen("P-256")}) {
            const auto pem = to_pem(sample.get());
            const pkey_ptr back = parse_private_key(pem, "EC");
            unsigned char* der = nullptr;
            const int length = i2d_PUBKEY(sample.get(), &der);
            if (length > 0) {
                const unsigned char* in = der;
                EVP_PKEY_free(d2i_PUBKEY(nullptr, &in, length));
            }
            OPENSSL_free(der);
        }
        auto& p = prepared();
        const std::lock_guard lock(p.mutex);
        p.server.push_back(std::move(server));
        p.client.push_back(std::move(client_verified));
        p.client.push_back(std::move(client_unverified));
    } catch (const std::exception&) {
        // OpenSSL that cannot make a context (a broken openssl.cnf, no ciphers) fails again
        // when the certificate manager makes its own, which says why and stops the start.
    }
    ERR_clear_error();
}

struct certificate_manager::impl {
    /// One cached leaf. Its own mutex serialises the handshakes that race for a new name, so
    /// the name gets one certificate, while other names proceed.
    struct cache_slot {
        std::mutex mutex;
        std::shared_ptr<const certified_key> key; ///< guarded by `mutex`
        std::list<std::string>::iterator place;   ///< in `recency`; guarded by `cache_mutex`
    };

    std::unique_ptr<certificate_authority> ca;
    x509_ptr ca_cert; ///< parsed once, to check leaves read back from disk
    issuance_policy policy;
    std::filesystem::path leaves_dir;

    using key_map = std::unordered_map<std::string, std::shared_ptr<const certified_key>>;
    key_map user_exact;    ///< user certificates by exact host
    key_map user_wildcard; ///< user certificates for `*.suffix`, by suffix

    std::mutex filter_mutex;
    std::shared_ptr<const name_filter> filter; ///< guarded by `filter_mutex`

    std::mutex cache_mutex;
    /// Issued leaves by exact name; guarded by `cache_mutex` (the slots by their own).
    std::unordered_map<std::string, std::shared_ptr<cache_slot>> cache;
    /// The names in `cache`, the most recently used first; guarded by `cache_mutex`.
    std::list<std::string> recency;
    /// Serialises the pruning of `leaves/`, so two issuers do not both count the same files.
    std::mutex prune_mutex;
    /// How many names `leaves/` holds, as last counted plus those issued since (unknown until
    /// the first issuance); guarded by `prune_mutex`. The directory is read only when this
    /// passes the bound, so a flood of new names does not read it at every issuance.
    std::optional<std::size_t> leaf_names;

    std::atomic<std::uint64_t> issued{0};

    ssl::context server = prepared_context(ssl::context::tls_server);
    ssl::context client_verified = prepared_context(ssl::context::tls_client);
    ssl::context client_unverified = prepared_context(ssl::context::tls_client);
    std::once_flag system_store_loaded; ///< see `load_system_store`

    /// The user certificate for `name`: an exact host, or `*.suffix` one label above it
    /// (a wildcard covers a single label, RFC 6125 §6.4.3).
    std::shared_ptr<const certified_key> user_certificate(const std::string& name) const
    {
        if (const auto it = user_exact.find(name); it != user_exact.end()) {
            return it->second;
        }
        const auto dot = name.find('.');
        if (dot != std::string::npos) {
            if (const auto it = user_wildcard.find(name.substr(dot + 1));
                it != user_wildcard.end()) {
                return it->second;
            }
        }
        return nullptr;
    }

    /// Whether a handshake naming `name` is answered at all.
    bool is_served(const std::string& name)
    {
        if (name == default_name) {
            return true;
        }
        if (!parse_ip_literal(name).empty()) {
            return user_certificate(name) || is_default_leaf_address(name);
        }
        // A name is served only in the form routes match names in, so that "a.localhost.."
        // is not a second name for a.localhost and "a b.legacy.test" none for a wildcard
        // certificate; what plain HTTP serves (an underscore, a long label) is served here.
        if (uri::normalize_host(name) != name) {
            return false;
        }
        if (user_certificate(name)) {
            return true;
        }
        std::shared_ptr<const name_filter> current;
        {
            const std::lock_guard lock(filter_mutex);
            current = filter;
        }
        // Outside the CA's name constraints an issued leaf would not verify anywhere, so such
        // a name is not served unless the user provides a certificate for it.
        return current && *current && (*current)(name) && ca->permits(name);
    }

    /// How many names keep a leaf, in memory and in `leaves/` (at least the one in use).
    std::size_t leaf_limit() const noexcept { return std::max<std::size_t>(policy.max_leaves, 1); }

    bool is_fresh(const certified_key& key) const
    {
        return key.not_after - std::chrono::system_clock::now() > policy.renew_before;
    }

    /**
     * The leaf for `name`: from memory, else from `leaves/`, else newly issued. A leaf that
     * comes within `renew_before` of expiry is replaced, also in memory, so that a process
     * running for months keeps valid certificates.
     *
     * Runs inside the handshake on an I/O thread. Issuing costs about a millisecond of CPU
     * (one P-256 key generation and one signature) and two small file writes, once per name
     * per `validity - renew_before`; a background issuer would add a queue and a thread for
     * a cost paid a handful of times per run. Cache hits take two short locks.
     */
    std::shared_ptr<const certified_key> leaf_for(const std::string& name)
    {
        std::shared_ptr<cache_slot> slot;
        {
            const std::lock_guard lock(cache_mutex);
            auto [entry, added] = cache.try_emplace(name);
            if (added) {
                entry->second = std::make_shared<cache_slot>();
                recency.push_front(name);
                entry->second->place = recency.begin();
                // The least recently used names go; a handshake holding one of their slots
                // finishes with it.
                while (cache.size() > leaf_limit()) {
                    cache.erase(recency.back());
                    recency.pop_back();
                }
            } else {
                recency.splice(recency.begin(), recency, entry->second->place);
            }
            slot = entry->second;
        }
        const std::lock_guard lock(slot->mutex);
        if (slot->key && is_fresh(*slot->key)) {
            return slot->key;
        }
        const auto cert_path = leaves_dir / (file_stem(name) + ".pem");
        const auto key_path = leaves_dir / (file_stem(name) + "-key.pem");
        std::string reason = slot->key ? "renewal" : "new";
        if (!slot->key) {
            std::string why;
            if (auto loaded = load_leaf(name, cert_path, key_path, why)) {
                slot->key = std::move(loaded);
                return slot->key;
            }
            if (!why.empty()) {
                reason = why;
            }
        }
        slot->key = issue_leaf(name, cert_path, key_path, reason);
        return slot->key;
    }

    /**
     * Reads a leaf written by an earlier run. It is used only if it parses, its key matches,
     * this CA signed it, it covers `name` and it is not due for renewal; otherwise `why` says
     * what is wrong ("" when there is no file) and the caller issues a new one.
     */
    std::shared_ptr<const certified_key> load_leaf(const std::string& name,
                                                   const std::filesystem::path& cert_path,
                                                   const std::filesystem::path& key_path,
                                                   std::string& why)
    {
        std::error_code ec;
        if (!std::filesystem::exists(cert_path, ec) && !std::filesystem::exists(key_path, ec)) {
            return nullptr;
        }
        std::string error;
        auto key = load_certified_key(cert_path, key_path, error);
        if (!key) {
            why = error;
            return nullptr;
        }
        if (X509_check_issued(ca_cert.get(), key->leaf.get()) != X509_V_OK ||
            X509_verify(key->leaf.get(), X509_get0_pubkey(ca_cert.get())) != 1) {
            ERR_clear_error();
            why = "not signed by the current CA";
            return nullptr;
        }
        // A CA that does not permit localhost gets a leaf for the loopback addresses alone
        // (`certificate_authority::issue`).
        const bool addresses_only = name == default_name && !ca->permits(name);
        if (!covers(key->leaf.get(), addresses_only ? std::string("127.0.0.1") : name)) {
            why = "does not name the host";
            return nullptr;
        }
        // Before the verification, which an expired leaf fails too.
        if (!is_fresh(*key) || X509_cmp_current_time(X509_get0_notBefore(key->leaf.get())) >= 0) {
            why = "due for renewal";
            return nullptr;
        }
        if (!verifies_under(ca_cert.get(), key->leaf.get())) {
            why = "does not verify under the CA (its name constraints)";
            return nullptr;
        }
        if (X509_get_ext_by_NID(key->leaf.get(), NID_crl_distribution_points, -1) < 0) {
            why = "names no revocation list";
            return nullptr;
        }
        // A key others could read is made private again, or replaced.
        if (auto exposed = restrict_key_file(key_path); !exposed.empty()) {
            why = std::move(exposed);
            return nullptr;
        }
        // The CA is not sent: the client has it as a trust anchor, and RFC 8446 §4.4.2 lets
        // the server omit it (saving half a kilobyte per full handshake).
        key->chain.reset(check(sk_X509_new_null(), "sk_X509_new_null"));
        // Pruning takes the oldest files first: a leaf read back is one in use.
        std::error_code touched;
        std::filesystem::last_write_time(cert_path, std::filesystem::file_time_type::clock::now(),
                                         touched);
        return key;
    }

    std::shared_ptr<const certified_key> issue_leaf(const std::string& name,
                                                    const std::filesystem::path& cert_path,
                                                    const std::filesystem::path& key_path,
                                                    const std::string& reason)
    {
        const auto leaf = ca->issue(name, policy);
        std::string error;
        auto key =
            make_certified_key(leaf.certificate_pem, leaf.key_pem, name, name + " key", error);
        if (!key) {
            throw openssl_error(error);
        }
        key->chain.reset(check(sk_X509_new_null(), "sk_X509_new_null"));
        issued.fetch_add(1, std::memory_order_relaxed);
        PORTICO_LOG(log::level::info, "certificate_issued", {"host", name}, {"reason", reason});
        // Key first, then the certificate: a crash in between leaves a pair that does not
        // match, which the next run detects and replaces. A failed write is not fatal: the
        // leaf still serves from memory and is issued again after a restart.
        error = write_file_atomically(key_path, leaf.key_pem, leaf_key_mode);
        if (error.empty()) {
            error = write_file_atomically(cert_path, leaf.certificate_pem, leaf_cert_mode);
        }
        if (!error.empty()) {
            PORTICO_LOG(log::level::warn, "certificate_not_saved", {"host", name},
                        {"error", error});
        }
        prune_leaves();
        return key;
    }

    /**
     * Keeps `leaves/` to `policy.max_leaves` names: the files of names no longer in memory
     * go, those issued longest ago first. Runs after each issuance, which is rare (once per
     * name per renewal period) unless something is asking for random names.
     */
    void prune_leaves()
    {
        const std::lock_guard prune_lock(prune_mutex);
        const auto limit = leaf_limit();
        if (leaf_names && *leaf_names < limit) {
            ++*leaf_names;
            return;
        }
        std::unordered_map<std::string, std::filesystem::file_time_type> written; // by stem
        std::error_code ec;
        for (std::filesystem::directory_iterator it(leaves_dir, ec), end; !ec && it != end;
             it.increment(ec)) {
            const auto& entry = *it;
            const auto file = entry.path().filename().string();
            std::string_view stem = file;
            if (stem.ends_with("-key.pem")) {
                stem.remove_suffix(8);
            } else if (stem.ends_with(".pem")) {
                stem.remove_suffix(4);
            } else {
                continue;
            }
            std::error_code time_ec;
            const auto time = entry.last_write_time(time_ec);
            auto& newest = written[std::string(stem)];
            newest = std::max(newest, time_ec ? std::filesystem::file_time_type::min() : time);
        }
        if (ec || written.size() <= limit) {
            leaf_names = ec ? std::nullopt : std::optional(written.size());
            return;
        }
        // A tenth below the bound, so that the next issuances need not read the directory.
        const auto counted = written.size();
        const auto excess = counted - (limit - limit / 10);
        // Names no longer in memory go first, the oldest first; then, if need be, the files
        // of names still in memory, which go on serving from there (and are issued again
        // after a restart).
        std::unordered_set<std::string> in_memory;
        {
            const std::lock_guard lock(cache_mutex);
            for (const auto& [name, slot] : cache) {
                in_memory.insert(file_stem(name));
            }
        }
        std::vector<std::tuple<bool, std::filesystem::file_time_type, std::string>> order;
        for (auto& [stem, time] : written) {
            order.emplace_back(in_memory.contains(stem), time, stem);
        }
        std::sort(order.begin(), order.end());
        for (std::size_t i = 0; i < excess; ++i) {
            const auto& stem = std::get<2>(order[i]);
            std::filesystem::remove(leaves_dir / (stem + "-key.pem"), ec);
            std::filesystem::remove(leaves_dir / (stem + ".pem"), ec);
        }
        leaf_names = counted - excess;
    }

    /// SNI callback (RFC 6066 §3): refuses names that are not served with a fatal
    /// `unrecognized_name` alert, before any certificate is chosen or issued.
    static int on_server_name(SSL* ssl, int* alert, void* arg)
    {
        auto* self = static_cast<impl*>(arg);
        const std::string name = sni_of(ssl);
        if (name.empty()) {
            return SSL_TLSEXT_ERR_OK; // no SNI: `default_name` is served
        }
        try {
            if (self->is_served(name)) {
                return SSL_TLSEXT_ERR_OK;
            }
            PORTICO_LOG(log::level::debug, "tls_name_refused", {"host", name});
        } catch (const std::exception& e) {
            PORTICO_LOG(log::level::error, "tls_name_filter_failed", {"host", name},
                        {"error", e.what()});
        }
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }

    /**
     * ClientHello callback, before a session is looked up: a session belongs to the name it
     * was made for. OpenSSL resumes one only under the session ID context it was made in,
     * so each name gets a context of its own; otherwise a TLS 1.2 session resumed under
     * another name would pass the SNI check with its old name (RFC 6066 §3 forbids the
     * resumption), and a TLS 1.3 one would skip it.
     */
    static int on_client_hello(SSL* ssl, int*, void*)
    {
        const auto sent = hello_server_name(ssl);
        if (sent.empty()) {
            return SSL_CLIENT_HELLO_SUCCESS;
        }
        const std::string name = normalize_server_name(sent);
        std::string keyed(reinterpret_cast<const char*>(session_id_context),
                          sizeof session_id_context);
        keyed += name;
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int size = 0;
        if (EVP_Digest(keyed.data(), keyed.size(), digest, &size, EVP_sha256(), nullptr) != 1 ||
            SSL_set_session_id_context(ssl, digest,
                                       std::min(size, unsigned{SSL_MAX_SID_CTX_LENGTH})) != 1) {
            ERR_clear_error();
            return SSL_CLIENT_HELLO_ERROR;
        }
        return SSL_CLIENT_HELLO_SUCCESS;
    }

    /// Certificate callback: installs the leaf for the SNI name (or `default_name`) on the
    /// connection. Returning 0 aborts the handshake with an internal_error alert.
    static int on_certificate(SSL* ssl, void* arg)
    {
        auto* self = static_cast<impl*>(arg);
        std::string name = sni_of(ssl);
        try {
            if (name.empty() || (is_default_leaf_address(name) && !self->user_certificate(name))) {
                name = default_name;
            }
            auto key = self->user_certificate(name);
            if (!key) {
                key = self->leaf_for(name);
            }
            if (SSL_use_cert_and_key(ssl, key->leaf.get(), key->key.get(), key->chain.get(), 1) !=
                1) {
                throw_openssl_error("SSL_use_cert_and_key");
            }
            return 1;
        } catch (const std::exception& e) {
            PORTICO_LOG(log::level::error, "certificate_failed", {"host", name},
                        {"error", e.what()});
        }
        return 0;
    }

    /// ALPN (RFC 7301): `http/1.1` when the client offers it, else `http/1.0`. A client
    /// offering neither (an `h2`-only client) gets the `no_application_protocol` alert that
    /// RFC 7301 §3.2 asks for, as from nginx and Go, rather than a handshake that succeeds
    /// and an HTTP/1.1 400 to its first frame.
    static int on_alpn(SSL*, const unsigned char** out, unsigned char* out_len,
                       const unsigned char* in, unsigned int in_len, void*)
    {
        unsigned char* selected = nullptr;
        if (SSL_select_next_proto(&selected, out_len, alpn_protocols, sizeof alpn_protocols, in,
                                  in_len) != OPENSSL_NPN_NEGOTIATED) {
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
    }

    void configure_server()
    {
        SSL_CTX* ctx = server.native_handle();
        check(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), "min protocol");
        check(SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION), "max protocol");
        // No renegotiation (a DoS lever, and pointless for HTTP/1.1 here); no compression
        // (CRIME); the server's cipher order, which puts the strongest suites first.
        SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                     SSL_OP_CIPHER_SERVER_PREFERENCE);
        check(SSL_CTX_set_cipher_list(ctx, tls12_ciphers), "SSL_CTX_set_cipher_list");
        check(SSL_CTX_set1_groups_list(ctx, key_exchange_groups), "SSL_CTX_set1_groups_list");
        // Resumption both ways: the session cache for TLS 1.2 session IDs, tickets (on by
        // default, key per context) for TLS 1.2 and 1.3. One context serves every worker.
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        check(SSL_CTX_set_session_id_context(ctx, session_id_context, sizeof session_id_context),
              "SSL_CTX_set_session_id_context");
        SSL_CTX_set_client_hello_cb(ctx, &impl::on_client_hello, nullptr);
        SSL_CTX_set_tlsext_servername_callback(ctx, &impl::on_server_name);
        SSL_CTX_set_tlsext_servername_arg(ctx, this);
        SSL_CTX_set_cert_cb(ctx, &impl::on_certificate, this);
        SSL_CTX_set_alpn_select_cb(ctx, &impl::on_alpn, nullptr);
    }

    void configure_clients()
    {
        for (SSL_CTX* ctx : {client_verified.native_handle(), client_unverified.native_handle()}) {
            check(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), "min protocol");
        }
        SSL_CTX* verified = client_verified.native_handle();
        check(X509_STORE_add_cert(SSL_CTX_get_cert_store(verified), ca_cert.get()),
              "X509_STORE_add_cert");
        client_verified.set_verify_mode(ssl::verify_peer);
        client_unverified.set_verify_mode(ssl::verify_none);
    }

    /**
     * Adds the system trust store to the verifying client context. Parsing the system bundle
     * takes longer than the rest of start-up together, and most configurations have no https
     * backend, so it happens on first use instead.
     */
    void load_system_store()
    {
        // A machine without a system store still verifies backends signed by the local CA.
        if (SSL_CTX_set_default_verify_paths(client_verified.native_handle()) != 1) {
            PORTICO_LOG(log::level::warn, "tls_system_store_unavailable",
                        {"error", drain_openssl_errors()});
        }
    }

    /// Loads `tls.certificates`; false with `error` naming the entry and file on failure.
    bool load_user_certificates(const config::tls_settings& settings, std::string& error)
    {
        for (const auto& entry : settings.certificates) {
            std::shared_ptr<const certified_key> key =
                load_certified_key(entry.cert, entry.key, error);
            if (!key) {
                if (!entry.where.file.empty()) {
                    error = config::diagnostic{entry.where, error}.to_string();
                }
                return false;
            }
            for (const auto& host : entry.hosts) {
                const std::string name = normalize_server_name(host);
                if (name.starts_with("*.")) {
                    user_wildcard.emplace(name.substr(2), key);
                } else {
                    user_exact.emplace(name, key);
                }
            }
        }
        return true;
    }
};

certificate_manager::certificate_manager(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

certificate_manager::~certificate_manager() = default;

std::unique_ptr<certificate_manager>
certificate_manager::create(const config::tls_settings& settings, name_filter served,
                            std::string& error, const issuance_policy& policy)
{
    error.clear();
    try {
        auto p = std::make_unique<impl>();
        p->ca = certificate_authority::open(settings.ca_dir, settings.ca_permitted_names, error);
        if (!p->ca) {
            return nullptr;
        }
        X509_up_ref(p->ca->certificate());
        p->ca_cert.reset(p->ca->certificate());
        p->policy = policy;
        p->leaves_dir = p->ca->certificate_path().parent_path() / "leaves";
        if (error = make_private_directory(p->leaves_dir); !error.empty()) {
            return nullptr;
        }
        if (!p->load_user_certificates(settings, error)) {
            return nullptr;
        }
        p->filter = std::make_shared<const name_filter>(std::move(served));
        p->configure_server();
        p->configure_clients();
        return std::unique_ptr<certificate_manager>(new certificate_manager(std::move(p)));
    } catch (const openssl_error& e) {
        error = fmt::format("TLS setup failed: {}", e.what());
    } catch (const boost::system::system_error& e) {
        error = fmt::format("TLS setup failed: {}", e.what());
    }
    return nullptr;
}

void certificate_manager::set_name_filter(name_filter served)
{
    auto next = std::make_shared<const name_filter>(std::move(served));
    const std::lock_guard lock(impl_->filter_mutex);
    impl_->filter = std::move(next);
}

ssl::context& certificate_manager::server_context() noexcept
{
    return impl_->server;
}

ssl::context& certificate_manager::client_context(bool verify) noexcept
{
    if (!verify) {
        return impl_->client_unverified;
    }
    std::call_once(impl_->system_store_loaded, [this] { impl_->load_system_store(); });
    return impl_->client_verified;
}

const certificate_authority& certificate_manager::authority() const noexcept
{
    return *impl_->ca;
}

std::uint64_t certificate_manager::certificates_issued() const noexcept
{
    return impl_->issued.load(std::memory_order_relaxed);
}

user_certificate_report check_user_certificates(const config::tls_settings& settings)
{
    user_certificate_report report;
    for (const auto& entry : settings.certificates) {
        std::string error;
        const auto& cert_at = entry.cert_at.line > 0 ? entry.cert_at : entry.where;
        const auto& key_at = entry.key_at.line > 0 ? entry.key_at : entry.where;
        try {
            const auto key = load_certified_key(entry.cert, entry.key, error);
            if (!key) {
                // The message starts with the file it is about.
                report.errors.push_back(
                    {error.starts_with(entry.key.string() + ":") ? key_at : cert_at, error});
                continue;
            }
            for (const auto& host : entry.hosts) {
                const auto name = normalize_server_name(host);
                // A wildcard entry serves any one label under its base: try one such name.
                const auto sample = name.starts_with("*.") ? "name" + name.substr(1) : name;
                if (!covers(key->leaf.get(), sample)) {
                    report.warnings.push_back(
                        {cert_at,
                         fmt::format("{} does not name '{}': clients will refuse it for that "
                                     "host",
                                     entry.cert.string(), host)});
                }
            }
            if (auto problem = validity_problem(*key); !problem.empty()) {
                report.warnings.push_back(
                    {cert_at, fmt::format("{} {}", entry.cert.string(), problem)});
            }
        } catch (const openssl_error& e) {
            report.errors.push_back({entry.where, e.what()});
        }
    }
    return report;
}

std::string requested_server_name(SSL* connection)
{
    return sni_of(connection);
}

} // namespace portico::tls
