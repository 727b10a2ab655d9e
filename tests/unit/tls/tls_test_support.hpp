#pragma once

// Helpers shared by the tls unit tests: a private temporary directory, file inspection,
// certificate verification against a CA, and an in-memory TLS handshake (two SSL objects
// joined by a BIO pair, no sockets).

#include "portico/tls/certificates.hpp"
#include "tls/openssl.hpp"

#include <openssl/err.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/stat.h>

namespace portico::tls::testing {

/// A fresh directory under /tmp, removed with everything in it at the end of the test.
class temp_dir {
public:
    temp_dir()
    {
        std::string pattern = "/tmp/portico-tls-test-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = pattern;
    }
    ~temp_dir()
    {
        std::error_code ec;
        std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::add, ec);
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    const std::filesystem::path& path() const noexcept { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

inline std::string slurp(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

inline void spit(const std::filesystem::path& path, const std::string& text)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

/// Permission bits of a file (e.g. 0600).
inline unsigned mode_of(const std::filesystem::path& path)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        return 0xffffffff;
    }
    return st.st_mode & 07777;
}

/// File names in a directory, sorted.
inline std::vector<std::string> list_dir(const std::filesystem::path& dir)
{
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

/// The first flight of a real OpenSSL client: one or more records holding the ClientHello.
inline std::string real_client_hello(const char* sni, int max_version = 0)
{
    const ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_max_proto_version(ctx.get(), max_version);
    const ssl_ptr ssl(SSL_new(ctx.get()));
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl.get(), in, out);
    if (sni != nullptr) {
        SSL_set_tlsext_host_name(ssl.get(), sni);
    }
    EXPECT_EQ(SSL_connect(ssl.get()), -1); // waits for the ServerHello
    ERR_clear_error();
    char* data = nullptr;
    const long n = BIO_get_mem_data(out, &data);
    return std::string(data, static_cast<std::size_t>(n));
}

/// The first certificate of a PEM text.
inline x509_ptr first_certificate(const std::string& pem)
{
    auto certs = parse_certificates(pem);
    return certs.empty() ? nullptr : std::move(certs.front());
}

/// Serial number as hex, to tell certificates apart.
inline std::string serial_of(X509* cert)
{
    const bignum_ptr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
    char* hex = BN_bn2hex(bn.get());
    std::string out(hex);
    OPENSSL_free(hex);
    return out;
}

/**
 * Verifies `leaf` as a TLS server certificate against `ca_pem` alone, the way a client that
 * trusts the CA would. Returns X509_V_OK or the verification error.
 */
inline int verify_leaf(X509* leaf, const std::string& ca_pem, X509_CRL* crl = nullptr)
{
    const x509_ptr ca = first_certificate(ca_pem);
    const x509_store_ptr store(X509_STORE_new());
    X509_STORE_add_cert(store.get(), ca.get());
    if (crl != nullptr) {
        // With a CRL the chain must also pass revocation checking against it.
        X509_STORE_add_crl(store.get(), crl);
        X509_STORE_set_flags(store.get(), X509_V_FLAG_CRL_CHECK);
    }
    const x509_store_ctx_ptr ctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr);
    X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_SERVER);
    const int ok = X509_verify_cert(ctx.get());
    const int error = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return ok == 1 ? X509_V_OK : error;
}

using ssl_session_ptr = openssl_ptr<SSL_SESSION, SSL_SESSION_free>;

/// How the test client behaves.
struct client_options {
    std::string sni;            ///< "" sends no SNI
    std::string trusted_ca_pem; ///< verify the server against this CA; "" = no verification
    int min_version = TLS1_2_VERSION;
    int max_version = 0;           ///< 0 = the highest supported
    std::string cipher_list;       ///< TLS 1.2 ciphers; "" = OpenSSL's default
    std::string alpn_wire;         ///< ALPN offer, length-prefixed; "" = none
    SSL_SESSION* resume = nullptr; ///< a session to resume
    SSL_CTX* context = nullptr;    ///< use this client context instead of building one
};

/// What a handshake came to.
struct handshake_outcome {
    bool ok = false;
    int alert_received = -1;   ///< alert description the client received, -1 if none
    x509_ptr peer;             ///< the server's leaf as the client saw it
    int peer_chain_length = 0; ///< certificates the server sent
    std::string alpn;          ///< protocol selected, "" for none
    std::string server_name;   ///< `requested_server_name` on the server side
    int version = 0;           ///< negotiated protocol version
    std::string cipher;        ///< negotiated cipher
    bool reused = false;       ///< the client resumed a session
    ssl_session_ptr session;   ///< the client's session, for a later resumption
};

inline void record_alert(const SSL* ssl, int where, int ret)
{
    if ((where & SSL_CB_READ_ALERT) == SSL_CB_READ_ALERT) {
        auto* outcome = static_cast<handshake_outcome*>(SSL_get_app_data(ssl));
        outcome->alert_received = ret & 0xff;
    }
}

/// Runs one TLS handshake between a test client and `server_ctx`, entirely in memory.
inline handshake_outcome run_handshake(SSL_CTX* server_ctx, const client_options& options)
{
    handshake_outcome outcome;
    ssl_ctx_ptr own_ctx;
    SSL_CTX* client_ctx = options.context;
    if (client_ctx == nullptr) {
        own_ctx.reset(SSL_CTX_new(TLS_client_method()));
        client_ctx = own_ctx.get();
        SSL_CTX_set_min_proto_version(client_ctx, options.min_version);
        SSL_CTX_set_max_proto_version(client_ctx, options.max_version);
        if (options.min_version < TLS1_2_VERSION) {
            // Let the client really offer the old protocol, so the server is what refuses it.
            SSL_CTX_set_security_level(client_ctx, 0);
            SSL_CTX_set_cipher_list(client_ctx, "DEFAULT:@SECLEVEL=0");
        }
        if (!options.cipher_list.empty()) {
            SSL_CTX_set_cipher_list(client_ctx, options.cipher_list.c_str());
        }
        if (!options.trusted_ca_pem.empty()) {
            const x509_ptr ca = first_certificate(options.trusted_ca_pem);
            X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx), ca.get());
            SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, nullptr);
        }
    }
    const ssl_ptr client(SSL_new(client_ctx));
    const ssl_ptr server(SSL_new(server_ctx));
    BIO* client_bio = nullptr;
    BIO* server_bio = nullptr;
    BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
    SSL_set_bio(client.get(), client_bio, client_bio);
    SSL_set_bio(server.get(), server_bio, server_bio);
    SSL_set_connect_state(client.get());
    SSL_set_accept_state(server.get());
    SSL_set_app_data(client.get(), &outcome);
    SSL_set_info_callback(client.get(), &record_alert);
    if (!options.sni.empty()) {
        SSL_set_tlsext_host_name(client.get(), options.sni.c_str());
        // Like browsers, check the certificate against the name without its trailing dot.
        std::string host = options.sni;
        if (host.back() == '.') {
            host.pop_back();
        }
        SSL_set1_host(client.get(), host.c_str());
    }
    if (!options.alpn_wire.empty()) {
        SSL_set_alpn_protos(client.get(),
                            reinterpret_cast<const unsigned char*>(options.alpn_wire.data()),
                            static_cast<unsigned>(options.alpn_wire.size()));
    }
    if (options.resume != nullptr) {
        SSL_set_session(client.get(), options.resume);
    }

    // Each side runs until it finishes or fails; a failed side has written its alert, which
    // the other side reads on its next step.
    enum class state { running, done, failed };
    state client_state = state::running;
    state server_state = state::running;
    const auto step = [](SSL* ssl, state& s) {
        if (s != state::running) {
            return;
        }
        const int r = SSL_do_handshake(ssl);
        if (r == 1) {
            s = state::done;
            return;
        }
        const int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            s = state::failed;
        }
    };
    for (int i = 0; i < 50; ++i) {
        step(client.get(), client_state);
        step(server.get(), server_state);
        if (client_state != state::running && server_state != state::running) {
            break;
        }
        if (client_state == state::failed || server_state == state::failed) {
            // Let the survivor read the alert, then stop.
            step(client.get(), client_state);
            step(server.get(), server_state);
            break;
        }
    }
    ERR_clear_error();
    outcome.ok = client_state == state::done && server_state == state::done;
    outcome.server_name = requested_server_name(server.get());
    if (!outcome.ok) {
        return outcome;
    }
    outcome.peer.reset(SSL_get1_peer_certificate(client.get()));
    if (const STACK_OF(X509)* chain = SSL_get_peer_cert_chain(client.get())) {
        outcome.peer_chain_length = sk_X509_num(chain);
    }
    const unsigned char* alpn = nullptr;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(client.get(), &alpn, &alpn_len);
    outcome.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
    outcome.version = SSL_version(client.get());
    outcome.cipher = SSL_get_cipher_name(client.get());
    outcome.reused = SSL_session_reused(client.get()) == 1;
    // TLS 1.3 tickets arrive after the handshake: let the client read them.
    char byte = 0;
    SSL_read(client.get(), &byte, 1);
    ERR_clear_error();
    outcome.session.reset(SSL_get1_session(client.get()));
    // A connection freed without close_notify marks its session not resumable.
    SSL_shutdown(client.get());
    SSL_shutdown(server.get());
    ERR_clear_error();
    return outcome;
}

} // namespace portico::tls::testing
