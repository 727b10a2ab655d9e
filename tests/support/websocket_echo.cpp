#include "support/origin.hpp"

#include <boost/beast/websocket/stream.hpp>

namespace portico::test {

void websocket_echo(origin_connection& c)
{
    auto req = c.read_request();
    if (!req) {
        return;
    }
    beast::websocket::stream<bounded_stream> ws(c.stream);
    boost::system::error_code ec;
    ws.accept(*req, ec);
    beast::flat_buffer buffer;
    while (!ec) {
        ws.read(buffer, ec);
        if (ec) {
            return;
        }
        ws.text(ws.got_text());
        ws.write(buffer.data(), ec);
        buffer.consume(buffer.size());
    }
}

} // namespace portico::test
