#pragma once

// Beast message types under names that read well in portico code. `portico::http` is a
// module, so Beast's namespace is always spelled `beast::http` (never aliased to `http`).

#include "portico/core/net.hpp"

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace portico::http {

using field = beast::http::field;
using fields = beast::http::fields;
using status = beast::http::status;
using verb = beast::http::verb;

/// A request head without body.
using request_head = beast::http::request_header<>;
/// A response head without body.
using response_head = beast::http::response_header<>;
/// A complete response held in memory (error pages, admin pages).
using string_response = beast::http::response<beast::http::string_body>;

} // namespace portico::http
