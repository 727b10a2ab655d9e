#include "portico/tls/client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <boost/asio/ip/address.hpp>

namespace portico::tls {

bool prepare_client(ssl_st* native, std::string_view host, bool verify)
{
    const std::string name(host);
    boost::system::error_code ec;
    boost::asio::ip::make_address(name, ec);
    const bool is_ip = !ec;
    // RFC 6066 §3: SNI carries host names only, never IP literals.
    if (!is_ip && SSL_set_tlsext_host_name(native, name.c_str()) != 1) {
        return false;
    }
    if (!verify) {
        return true;
    }
    if (is_ip) {
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(native), name.c_str()) == 1;
    }
    return SSL_set1_host(native, name.c_str()) == 1;
}

std::string verify_failure(ssl_st* native)
{
    // OpenSSL records a verdict on the certificate even when it was told not to act on it:
    // a handshake that failed for another reason is not the certificate's fault then.
    if (SSL_get_verify_mode(native) == SSL_VERIFY_NONE) {
        return {};
    }
    const long result = SSL_get_verify_result(native);
    if (result == X509_V_OK) {
        return {};
    }
    return X509_verify_cert_error_string(result);
}

} // namespace portico::tls
