#pragma once

// Private helpers shared by the tls sources (and the tls unit tests): owning pointers for
// OpenSSL objects, conversion of OpenSSL's error queue into exceptions, PEM encoding and
// decoding, and the name forms certificates use. Nothing outside src/tls and tests/unit/tls
// includes this file.

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace portico::tls {

/// Deleter calling the OpenSSL `*_free` function `Free`.
template <auto Free> struct openssl_deleter {
    template <typename T> void operator()(T* p) const noexcept { Free(p); }
};

/// Owns an OpenSSL object of type `T`, released with `Free`.
template <typename T, auto Free> using openssl_ptr = std::unique_ptr<T, openssl_deleter<Free>>;

/// A stack of certificates (a certificate chain).
using x509_stack = STACK_OF(X509);

namespace detail {
/// `sk_X509_pop_free` is a macro; this gives it an address.
void free_x509_stack(x509_stack* stack) noexcept;
} // namespace detail

using asn1_integer_ptr = openssl_ptr<ASN1_INTEGER, ASN1_INTEGER_free>;
using asn1_octet_string_ptr = openssl_ptr<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;
using bignum_ptr = openssl_ptr<BIGNUM, BN_free>;
using bio_ptr = openssl_ptr<BIO, BIO_free_all>;
using general_name_ptr = openssl_ptr<GENERAL_NAME, GENERAL_NAME_free>;
using general_names_ptr = openssl_ptr<GENERAL_NAMES, GENERAL_NAMES_free>;
using general_subtree_ptr = openssl_ptr<GENERAL_SUBTREE, GENERAL_SUBTREE_free>;
using name_constraints_ptr = openssl_ptr<NAME_CONSTRAINTS, NAME_CONSTRAINTS_free>;
using pkey_ptr = openssl_ptr<EVP_PKEY, EVP_PKEY_free>;
using ssl_ctx_ptr = openssl_ptr<SSL_CTX, SSL_CTX_free>;
using ssl_ptr = openssl_ptr<SSL, SSL_free>;
using x509_crl_ptr = openssl_ptr<X509_CRL, X509_CRL_free>;
using x509_extension_ptr = openssl_ptr<X509_EXTENSION, X509_EXTENSION_free>;
using x509_name_ptr = openssl_ptr<X509_NAME, X509_NAME_free>;
using x509_ptr = openssl_ptr<X509, X509_free>;
using x509_stack_ptr = openssl_ptr<x509_stack, detail::free_x509_stack>;
using x509_store_ctx_ptr = openssl_ptr<X509_STORE_CTX, X509_STORE_CTX_free>;
using x509_store_ptr = openssl_ptr<X509_STORE, X509_STORE_free>;

/// An OpenSSL call failed; the message includes OpenSSL's error queue.
class openssl_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Drains OpenSSL's error queue of this thread into one line ("" when it is empty).
std::string drain_openssl_errors();

/// Throws `openssl_error` saying `what` failed, with OpenSSL's reasons.
[[noreturn]] void throw_openssl_error(std::string_view what);

/// Returns `p` when it is non-null, else throws `openssl_error` naming `what`.
template <typename T> T* check(T* p, std::string_view what)
{
    if (p == nullptr) {
        throw_openssl_error(what);
    }
    return p;
}

/// Throws `openssl_error` naming `what` unless `result` is 1 (OpenSSL's success).
void check(int result, std::string_view what);

/// A certificate chain (leaf first) with the private key of the leaf, parsed once.
struct certified_key {
    x509_ptr leaf;
    x509_stack_ptr chain; ///< certificates sent after the leaf; may be empty, never null
    pkey_ptr key;
    std::chrono::system_clock::time_point not_after;
};

/// Parses every certificate of a PEM text, in order; empty when there is none or one is bad.
std::vector<x509_ptr> parse_certificates(std::string_view pem);
/// Parses one PEM private key (any format OpenSSL reads); null when it is not one.
/// `expected_type` (such as "EC", see `certificate_key_type`) is tried first, which is
/// faster; a key of another type is still read.
pkey_ptr parse_private_key(std::string_view pem, const char* expected_type = nullptr);
/// The first PEM block of `pem` read as an unencrypted private key of `type` ("EC"...) only;
/// null for any other block, type or an encrypted key. `parse_private_key`'s fast path.
pkey_ptr parse_private_key_of_type(std::string_view pem, const char* type);
/// The type name of a certificate's public key ("EC", "RSA", ...); null when unknown.
const char* certificate_key_type(X509* certificate);
/// Encodes a certificate as PEM.
std::string to_pem(X509* certificate);
/// Encodes a private key as unencrypted PKCS#8 PEM.
std::string to_pem(EVP_PKEY* key);

/**
 * Builds a `certified_key` from a PEM certificate chain and a PEM key, checking that the key
 * belongs to the leaf. `cert_name` and `key_name` name the sources in the error message.
 * @return null with `error` set on failure.
 */
std::unique_ptr<certified_key> make_certified_key(std::string_view cert_pem,
                                                  std::string_view key_pem,
                                                  const std::string& cert_name,
                                                  const std::string& key_name, std::string& error);

/// Reads `cert` and `key` and builds a `certified_key` (errors name the files).
std::unique_ptr<certified_key> load_certified_key(const std::filesystem::path& cert,
                                                  const std::filesystem::path& key,
                                                  std::string& error);

/// Converts an ASN.1 time (UTCTime or GeneralizedTime) to a time point.
std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* time);

/// A server name as certificates and caches key it: ASCII lower case, no trailing dot.
std::string normalize_server_name(std::string_view name);

/// Parses a textual IPv4 or IPv6 address into its 4 or 16 network-order bytes; empty if
/// `text` is not an IP literal.
std::string parse_ip_literal(std::string_view text);

} // namespace portico::tls
