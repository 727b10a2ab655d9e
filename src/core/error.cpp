#include "portico/core/error.hpp"

#include <string>

namespace portico {
namespace {

class portico_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "portico"; }

    std::string message(int ev) const override
    {
        switch (static_cast<errc>(ev)) {
        case errc::no_route: return "no route for this host";
        case errc::upstream_refused: return "the backend refused the connection";
        case errc::upstream_connect_timeout: return "connecting to the backend timed out";
        case errc::upstream_timeout: return "the backend did not answer in time";
        case errc::upstream_tls: return "TLS to the backend failed";
        case errc::upstream_protocol: return "the backend sent an invalid response";
        case errc::bad_request: return "malformed request";
        case errc::header_too_large: return "request head too large";
        case errc::body_too_large: return "request body too large";
        case errc::header_timeout: return "request head not received in time";
        case errc::tls_required: return "this address requires TLS";
        case errc::forbidden_origin: return "request from a foreign origin";
        case errc::tls_handshake_failed: return "TLS handshake failed";
        }
        return "unknown portico error";
    }
};

} // namespace

const boost::system::error_category& error_category() noexcept
{
    static const portico_category category;
    return category;
}

boost::system::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), error_category()};
}

std::string_view to_string(errc e) noexcept
{
    switch (e) {
    case errc::no_route: return "no_route";
    case errc::upstream_refused: return "upstream_refused";
    case errc::upstream_connect_timeout: return "upstream_connect_timeout";
    case errc::upstream_timeout: return "upstream_timeout";
    case errc::upstream_tls: return "upstream_tls";
    case errc::upstream_protocol: return "upstream_protocol";
    case errc::bad_request: return "bad_request";
    case errc::header_too_large: return "header_too_large";
    case errc::body_too_large: return "body_too_large";
    case errc::header_timeout: return "header_timeout";
    case errc::tls_required: return "tls_required";
    case errc::forbidden_origin: return "forbidden_origin";
    case errc::tls_handshake_failed: return "tls_handshake_failed";
    }
    return "unknown";
}

} // namespace portico
