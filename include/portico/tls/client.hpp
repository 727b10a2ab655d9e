#pragma once

// Per-connection settings for TLS to https backends.

#include <string>
#include <string_view>

struct ssl_st;

namespace portico::tls {

/**
 * Sets SNI (for DNS names) and, when `verify` is set, the name the backend's certificate
 * must match (DNS name or IP address) on a client TLS connection before its handshake.
 * @return false when OpenSSL refused the settings.
 */
bool prepare_client(ssl_st* native, std::string_view host, bool verify);

/// Why certificate verification failed on a finished handshake ("" when it did not, or when
/// the connection does not verify).
std::string verify_failure(ssl_st* native);

} // namespace portico::tls
