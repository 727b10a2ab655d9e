#include "tls/openssl.hpp"

#include "portico/core/uri.hpp"
#include "tls/files.hpp"

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <fmt/format.h>

#include <arpa/inet.h>

#include <climits>
#include <ctime>

namespace portico::tls {
namespace detail {

void free_x509_stack(x509_stack* stack) noexcept
{
    sk_X509_pop_free(stack, X509_free);
}

} // namespace detail

namespace {

/// A read-only memory BIO over `text` (not copied; `text` must outlive the BIO).
bio_ptr memory_source(std::string_view text)
{
    if (text.size() > static_cast<std::size_t>(INT_MAX)) {
        throw openssl_error("PEM text too large");
    }
    return bio_ptr(
        check(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), "BIO_new_mem_buf"));
}

/// A passphrase callback that gives none: an encrypted key is reported as unreadable instead
/// of prompting on the terminal, which would hang a server.
int no_passphrase(char*, int, int, void*)
{
    return 0;
}

/// Runs `write(bio)` on a fresh memory BIO and returns what it wrote.
template <typename Write> std::string write_pem(Write write, std::string_view what)
{
    bio_ptr bio(check(BIO_new(BIO_s_mem()), "BIO_new"));
    check(write(bio.get()), what);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
}

} // namespace

std::string drain_openssl_errors()
{
    std::string text;
    while (const unsigned long code = ERR_get_error()) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof buffer);
        if (!text.empty()) {
            text += "; ";
        }
        text += buffer;
    }
    return text;
}

void throw_openssl_error(std::string_view what)
{
    const std::string reasons = drain_openssl_errors();
    throw openssl_error(reasons.empty() ? fmt::format("{} failed", what)
                                        : fmt::format("{} failed: {}", what, reasons));
}

void check(int result, std::string_view what)
{
    if (result != 1) {
        throw_openssl_error(what);
    }
}

std::vector<x509_ptr> parse_certificates(std::string_view pem)
{
    std::vector<x509_ptr> chain;
    const bio_ptr bio = memory_source(pem);
    while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
        chain.emplace_back(cert);
    }
    // The loop ends with "no start line" after the last certificate; anything else means a
    // damaged certificate, which must not be silently skipped.
    const unsigned long last = ERR_peek_last_error();
    const bool clean_end =
        ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
    if (!clean_end && last != 0) {
        chain.clear();
    }
    ERR_clear_error();
    return chain;
}

pkey_ptr parse_private_key_of_type(std::string_view pem, const char* type)
{
    // Reading a key without its type has OpenSSL 3.0 set up a decoder for every key type and
    // format its providers know (about 4 M instructions for a P-256 key); named, only that
    // type's (about 1 M). The decoder reads the text's first PEM block only, so a file that
    // starts with EC PARAMETERS or a certificate is left to the general path.
    EVP_PKEY* key = nullptr;
    const openssl_ptr<OSSL_DECODER_CTX, &OSSL_DECODER_CTX_free> decoder(
        OSSL_DECODER_CTX_new_for_pkey(&key, "PEM", nullptr, type, EVP_PKEY_KEYPAIR, nullptr,
                                      nullptr));
    if (decoder) {
        OSSL_DECODER_CTX_set_pem_password_cb(decoder.get(), no_passphrase, nullptr);
        const bio_ptr bio = memory_source(pem);
        if (OSSL_DECODER_from_bio(decoder.get(), bio.get()) == 1 && key != nullptr) {
            ERR_clear_error();
            return pkey_ptr(key);
        }
        EVP_PKEY_free(key);
    }
    ERR_clear_error();
    return nullptr;
}

pkey_ptr parse_private_key(std::string_view pem, const char* expected_type)
{
    if (expected_type != nullptr) {
        if (auto key = parse_private_key_of_type(pem, expected_type)) {
            return key;
        }
    }
    const bio_ptr bio = memory_source(pem);
    pkey_ptr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
    ERR_clear_error();
    return key;
}

const char* certificate_key_type(X509* certificate)
{
    // A certificate without a readable key queues an error here, which is no caller's.
    ERR_set_mark();
    const EVP_PKEY* key = X509_get0_pubkey(certificate);
    ERR_pop_to_mark();
    return key == nullptr ? nullptr : EVP_PKEY_get0_type_name(key);
}

std::string to_pem(X509* certificate)
{
    return write_pem([certificate](BIO* bio) { return PEM_write_bio_X509(bio, certificate); },
                     "PEM_write_bio_X509");
}

std::string to_pem(EVP_PKEY* key)
{
    return write_pem(
        [key](BIO* bio) {
            return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
        },
        "PEM_write_bio_PrivateKey");
}

std::unique_ptr<certified_key> make_certified_key(std::string_view cert_pem,
                                                  std::string_view key_pem,
                                                  const std::string& cert_name,
                                                  const std::string& key_name, std::string& error)
{
    auto certs = parse_certificates(cert_pem);
    if (certs.empty()) {
        error = fmt::format("{}: no valid PEM certificate", cert_name);
        return nullptr;
    }
    auto result = std::make_unique<certified_key>();
    result->key = parse_private_key(key_pem, certificate_key_type(certs.front().get()));
    if (!result->key) {
        error = fmt::format("{}: not a PEM private key (or it is encrypted)", key_name);
        return nullptr;
    }
    if (X509_check_private_key(certs.front().get(), result->key.get()) != 1) {
        ERR_clear_error();
        error = fmt::format("{}: the private key does not belong to the certificate in {}",
                            key_name, cert_name);
        return nullptr;
    }
    result->chain.reset(check(sk_X509_new_null(), "sk_X509_new_null"));
    for (std::size_t i = 1; i < certs.size(); ++i) {
        if (sk_X509_push(result->chain.get(), certs[i].get()) == 0) {
            throw_openssl_error("sk_X509_push");
        }
        static_cast<void>(certs[i].release()); // now owned by the stack
    }
    result->not_after = to_time_point(X509_get0_notAfter(certs.front().get()));
    result->leaf = std::move(certs.front());
    return result;
}

std::unique_ptr<certified_key> load_certified_key(const std::filesystem::path& cert,
                                                  const std::filesystem::path& key,
                                                  std::string& error)
{
    const auto cert_pem = read_file(cert, error);
    if (!cert_pem) {
        return nullptr;
    }
    const auto key_pem = read_file(key, error);
    if (!key_pem) {
        return nullptr;
    }
    return make_certified_key(*cert_pem, *key_pem, cert.string(), key.string(), error);
}

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* time)
{
    std::tm tm{};
    check(ASN1_TIME_to_tm(time, &tm), "ASN1_TIME_to_tm");
    return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

std::string normalize_server_name(std::string_view name)
{
    if (!name.empty() && name.back() == '.') {
        name.remove_suffix(1);
    }
    return uri::to_lower(name);
}

std::string parse_ip_literal(std::string_view text)
{
    const std::string name(text);
    unsigned char bytes[16];
    if (::inet_pton(AF_INET, name.c_str(), bytes) == 1) {
        return std::string(reinterpret_cast<const char*>(bytes), 4);
    }
    if (::inet_pton(AF_INET6, name.c_str(), bytes) == 1) {
        return std::string(reinterpret_cast<const char*>(bytes), 16);
    }
    return {};
}

} // namespace portico::tls
