// The HTTP/1.x downstream codec: reads request heads, answers errors, and drives one
// exchange at a time with a backend (pipelined requests are therefore answered in order),
// streaming bodies both ways through fixed buffers.

#include "proxy/exchange.hpp"
#include "proxy/tls_stream.hpp"
#include "proxy/worker.hpp"

#include "portico/admin/pages.hpp"
#include "portico/core/log.hpp"
#include "portico/http/error_page.hpp"
#include "portico/http/head_text.hpp"
#include "portico/http/header_policy.hpp"
#include "portico/http/request_checks.hpp"
#include "portico/core/uri.hpp"
#include "portico/tls/certificates.hpp"
#include "portico/tls/client_hello.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>

namespace portico::proxy {
namespace {

using namespace net::experimental::awaitable_operators;
using buffer_body = beast::http::buffer_body;
using request_parser = beast::http::request_parser<buffer_body>;
using response_parser = beast::http::response_parser<buffer_body>;
using clock = std::chrono::steady_clock;

// Bytes asked of the socket per read while a head is incomplete.
constexpr std::size_t head_read_size = 16 * 1024;
// Buffer held while a keep-alive connection waits for its next request: enough for a typical
// browser request head in one read, small enough that idle connections cost little. A
// larger head grows the buffer as it arrives.
constexpr std::size_t idle_read_size = 2 * 1024;
// Body bytes moved per read/write step; bounds the memory an exchange holds.
constexpr std::size_t body_chunk_size = 64 * 1024;
// A body up to this size that arrived with its head is copied behind the head, so both leave
// in one buffer: one write, and over TLS one record instead of two.
constexpr std::size_t inline_body_size = 16 * 1024;
// After an error response the client may still be sending (a large upload): read and
// discard for this long or this many bytes so it sees the page instead of a reset. A client
// stops an upload when it reads the answer; what it sent meanwhile at loopback speed is
// several megabytes.
constexpr auto lingering_close_time = std::chrono::seconds(2);
constexpr std::size_t lingering_close_bytes = 64 * 1024 * 1024;

/**
 * How long a body relay waits for each step. A read waits at most `read` for its first byte
 * (0: under whatever deadline the source already has; a response body from a backend is not
 * bounded, dev servers stream and stall), a write at most `write` to complete, so a body of
 * any size takes as long as it needs while its bytes keep moving. While a bounded read is
 * awaited the destination has no deadline: nothing is being written to it, and a wait for
 * its answer (`watch_for_early_response`) must outlast a slow client.
 *
 * The answer to a request body still being sent (`beside_body`, decision 0014) shares both
 * connections with the body's relay, whose steps keep their deadlines: the answer's reads
 * leave the client's alone, and push the backend's on only while a write of the body waits
 * there (a body the backend does not take while its answer flows is not cut). Its reads
 * need no bound of their own: a body write waiting has its deadline, and while the body
 * waits for the client, the client's deadline ends the exchange (a failed body shuts the
 * backend's connection), which then is the client's failure, not the backend's.
 */
struct step_timeouts {
    std::chrono::milliseconds read{0};
    std::chrono::milliseconds write{0};
    bool beside_body = false;
};

/**
 * A request body that goes on being sent while the backend's answer is relayed (decision
 * 0014): its relay runs as a coroutine of its own, which the exchange waits for (or stops)
 * before it ends, since it reads the client's connection and writes the backend's.
 */
struct body_job {
    explicit body_job(const io_executor& ex) : finished_timer(ex)
    {
        finished_timer.expires_at(steady_timer::time_point::max());
    }

    steady_timer finished_timer; ///< cancelled when the relay ends, which wakes `wait_for_body`
    net::cancellation_signal stop;
    bool finished = false;
    bool streaming = false; ///< the answer is being relayed: a failed body ends the exchange
    /// The body's steps: each read of the client and each write to the backend waits at
    /// most `timeouts.idle`. Held here: the relay refers to them for as long as it runs.
    step_timeouts body_steps;
    /// The answer's steps while the body goes (`step_timeouts::beside_body`); read by the
    /// relay at each step, so that they can end with the body: its reads are then unbounded.
    step_timeouts answer_steps;
    /// What the answer's next read may wait once the body is all sent (0: no bound).
    std::chrono::milliseconds answer_read_bound{0};
    boost::system::error_code result;
    bool read_failed = false;
};

task<void> stop_body(body_job& job);

/// What is known about a client connection, whatever protocol it speaks.
struct client_info {
    worker& w;
    std::uint64_t id;
    std::string client; ///< "ip:port"
    std::string client_ip;
    std::string local_port;
    bool tls = false;          ///< requests arrive over TLS
    bool tls_required = false; ///< plain HTTP on a `tls: only` listener
    bool listener_serves_tls = true; ///< not accepted on a `tls: off` listener
    bool loopback_listener = true; ///< accepted on a loopback address
    connection_entry* entry;
    std::string head; ///< serialised heads, reused so that a request does not allocate one
    /// A response body broke off: the connection then ends with a reset, or over TLS
    /// without close_notify, which for a body delimited by the close is the client's only
    /// sign of the cut.
    bool response_cut = false;
    /// A request body still being sent beside its answer: an error page stops it first, so
    /// that the page's lingering close is the only reader of the client's connection.
    body_job* body_in_flight = nullptr;
};

// Room for a typical head: a new connection's buffer starts here instead of growing into a
// 200-byte head by doubling, four allocations.
constexpr std::size_t typical_head_size = 512;

/// The connection's head buffer, emptied, with room for a typical head.
std::string& empty_head(client_info& info)
{
    info.head.clear();
    if (info.head.capacity() < typical_head_size) {
        info.head.reserve(typical_head_size);
    }
    return info.head;
}

/// The steps of an exchange see the client through this view: plain TCP or TLS over it.
template <typename Stream>
struct connection {
    client_info& info;
    Stream& stream;
    beast::flat_buffer& buffer; ///< bytes read from the client, not yet consumed
    worker& w;
    /// The configuration the request being served was planned with, which `serve_request`
    /// keeps alive for it: a reload meanwhile replaces the worker's and may free it.
    const serving_state* state = nullptr;
};

/**
 * What a client connection owns, registered with its worker for as long as it lives. It is
 * on the heap rather than in a coroutine frame so that a connection waiting for its next
 * request can be parked with no frame at all (see `park`).
 */
struct client_connection {
    /// A connection just accepted from `remote` on `local`.
    client_connection(worker& w, tcp_stream stream, const tcp::endpoint& remote,
                      const tcp::endpoint& local, std::uint64_t id)
        : client_connection(w, std::move(stream), remote, local.port(),
                            local.address().is_loopback(), id)
    {
        w.register_connection(registration);
    }

    /// A connection back from the parking lot, which counted it open meanwhile.
    client_connection(worker& w, tcp_stream stream, const parked_connection& p)
        : client_connection(w, std::move(stream), p.remote, p.local_port, p.loopback_listener, p.id)
    {
        info.tls_required = p.tls_required;
        info.listener_serves_tls = p.listener_serves_tls;
        w.register_connection(registration, true);
    }

    client_connection(const client_connection&) = delete;
    client_connection& operator=(const client_connection&) = delete;
    ~client_connection() { info.w.unregister_connection(registration, parked); }

    tcp_stream tcp;
    connection_entry registration;
    client_info info;
    beast::flat_buffer buffer; ///< bytes read from the client, not yet consumed
    tcp::endpoint peer;        ///< the client's address, kept for parking
    std::uint16_t local_port;
    bool parked = false; ///< its descriptor went to the parking lot, which counts it open

private:
    client_connection(worker& w, tcp_stream stream, const tcp::endpoint& remote, std::uint16_t port,
                      bool loopback_listener, std::uint64_t id)
        : tcp(std::move(stream)), registration(tcp),
          info{
              w,
              id,
              endpoint_text(remote),
              address_text(remote.address()),
              std::to_string(port),
              false,
              false,
              true,
              loopback_listener,
              &registration,
              {},
          },
          peer(remote), local_port(port)
    {
    }
};

/// The TCP stream under a (possibly TLS) stream, which carries the deadlines.
template <typename Stream>
auto& tcp_of(Stream& s)
{
    return beast::get_lowest_layer(s);
}

std::string_view proto_name(unsigned version) { return version == 10 ? "HTTP/1.0" : "HTTP/1.1"; }

/// Methods RFC 9110 §9.2.2 lets a client retry automatically.
bool is_idempotent(beast::http::verb v)
{
    using beast::http::verb;
    return v == verb::get || v == verb::head || v == verb::options || v == verb::trace ||
           v == verb::put || v == verb::delete_;
}

/// How a read on a connection the peer had already closed fails before any byte arrives.
bool is_stale_close(const boost::system::error_code& ec)
{
    // A TLS backend that closes its socket without close_notify reads as a truncated stream.
    return ec == beast::http::error::end_of_stream || ec == net::error::eof ||
           ec == net::error::connection_reset || ec == net::error::broken_pipe ||
           ec == net::ssl::error::stream_truncated;
}

bool is_quiet_close(const boost::system::error_code& ec)
{
    return ec == beast::http::error::end_of_stream || ec == net::error::eof ||
           ec == net::error::connection_reset || ec == net::error::operation_aborted ||
           ec == net::error::broken_pipe || ec == beast::error::timeout;
}

/// What reading a request head produced.
struct head_result {
    enum class kind { head, closed, failed } what = kind::closed;
    errc error = errc::bad_request;
    std::size_t length = 0;
    /// For a head that timed out: when the wait for its rest began, which its log line's
    /// duration counts from.
    std::optional<clock::time_point> began;
};

/// A complete head of `length` bytes: served, or refused when it is over `limit`.
head_result complete_head(std::size_t length, std::size_t limit)
{
    head_result r;
    r.length = length;
    if (length > limit) {
        r.what = head_result::kind::failed;
        r.error = errc::header_too_large;
    } else {
        r.what = head_result::kind::head;
    }
    return r;
}

/**
 * Reads some bytes, giving up at `deadline` without closing the socket (unlike the stream's
 * own deadline), so that a 408 page can still be written.
 */
template <typename Stream>
task<std::tuple<boost::system::error_code, std::size_t>>
read_some_before(connection<Stream>& c, net::mutable_buffer into, clock::time_point deadline)
{
    steady_timer timer(tcp_of(c.stream).get_executor());
    timer.expires_at(deadline);
    auto outcome = co_await (c.stream.async_read_some(into, as_task) || timer.async_wait(as_task));
    if (outcome.index() == 0) {
        co_return std::get<0>(outcome);
    }
    co_return std::tuple{make_error_code(errc::header_timeout), std::size_t{0}};
}

/**
 * Reads until `c.buffer` holds a complete request head. The wait for the first byte is
 * bounded by `timeouts.header` on a new connection and `timeouts.idle` between requests
 * (the connection is then closed quietly); once a byte arrived the rest of the head must
 * follow within `timeouts.header` or the client gets 408.
 */
template <typename Stream>
task<head_result> read_head(connection<Stream>& c, bool first_request)
{
    // Held: a reload while the head is awaited replaces the worker's state.
    const auto state = c.w.state();
    const auto& cfg = state->cfg;
    const auto limit = static_cast<std::size_t>(cfg.limits.header_bytes);
    head_result r;
    // Empty lines before a request line are allowed and ignored (RFC 9112 §2.2).
    auto skip_empty_lines = [&c] {
        for (;;) {
            const auto data = std::string_view(static_cast<const char*>(c.buffer.data().data()),
                                               c.buffer.size());
            if (data.starts_with("\r\n")) {
                c.buffer.consume(2);
            } else if (data.starts_with("\n")) {
                c.buffer.consume(1);
            } else {
                return;
            }
        }
    };
    skip_empty_lines();
    bool started = c.buffer.size() > 0;
    // Set once the head has begun and a read is needed: most heads arrive in one read, and
    // their clock read would be wasted.
    auto head_deadline = clock::time_point::max();
    if (started) {
        // The stream's own deadline would close the socket; a started head is bounded by
        // `head_deadline` instead so that the client still gets its 408.
        tcp_of(c.stream).expires_never();
        // A request that has begun to arrive is in flight: a shutdown lets it finish.
        c.info.entry->idle = false;
    } else {
        tcp_of(c.stream).expires_after(first_request ? cfg.timeouts.header
                                                     : cfg.timeouts.idle);
    }
    std::size_t scanned = 0;
    for (;;) {
        const auto data = std::string_view(static_cast<const char*>(c.buffer.data().data()),
                                           c.buffer.size());
        const auto from = scanned > 3 ? scanned - 3 : 0;
        if (const auto end = http::find_head_end(data.substr(from)); end != 0) {
            co_return complete_head(from + end, limit);
        }
        scanned = data.size();
        if (data.size() >= limit) {
            r.what = head_result::kind::failed;
            r.error = errc::header_too_large;
            co_return r;
        }
        const auto step = data.empty() ? idle_read_size : head_read_size;
        const auto into = c.buffer.prepare(std::min(step, limit + 4 - data.size()));
        boost::system::error_code ec;
        std::size_t n = 0;
        if (started) {
            if (head_deadline == clock::time_point::max()) {
                head_deadline = clock::now() + cfg.timeouts.header;
            }
            std::tie(ec, n) = co_await read_some_before(c, into, head_deadline);
        } else {
            std::tie(ec, n) = co_await c.stream.async_read_some(into);
        }
        if (ec) {
            if (ec == errc::header_timeout) {
                r.what = head_result::kind::failed;
                r.error = errc::header_timeout;
                r.began = head_deadline - cfg.timeouts.header;
            } else {
                r.what = head_result::kind::closed;
            }
            co_return r;
        }
        c.buffer.commit(n);
        if (!started) {
            skip_empty_lines();
            if (c.buffer.size() > 0) {
                started = true;
                head_deadline = clock::now() + cfg.timeouts.header;
                tcp_of(c.stream).expires_never();
                c.info.entry->idle = false;
            }
        }
    }
}

/// Shuts down the sending side, then reads and discards for a bounded time before closing.
template <typename Stream>
task<void> lingering_close(connection<Stream>& c)
{
    // Discarded bytes need no decryption, so this works on the TCP layer for TLS too; but a
    // TLS client is first told the stream ends (close_notify, sent if the socket takes it,
    // not waited for), so that it does not take the end for a truncation.
    auto& tcp = tcp_of(c.stream);
    if constexpr (!std::is_same_v<Stream, tcp_stream>) {
        // After a cut body, no close_notify: it would say the body is whole (`serve_tls`).
        if (tcp.is_open() && !c.info.response_cut) {
            ::SSL_shutdown(c.stream.native_handle());
            if (::ERR_peek_error() != 0) {
                ::ERR_clear_error();
            }
        }
    }
    if (c.w.is_past_shutdown_deadline() || c.info.response_cut) {
        // The grace period is over, or a FIN would tell the client a cut body is whole:
        // nothing more is waited for.
        tcp.close();
        co_return;
    }
    boost::system::error_code ec;
    tcp.shutdown(tcp::socket::shutdown_send, ec);
    tcp.expires_after(lingering_close_time);
    std::size_t discarded = 0;
    std::array<char, 4096> sink{};
    while (discarded < lingering_close_bytes) {
        auto [rec, n] = co_await tcp.async_read_some(net::buffer(sink));
        if (rec) {
            break;
        }
        discarded += n;
    }
    tcp.close();
}

/// Sends a complete response with the downstream write deadline.
template <typename Stream>
task<boost::system::error_code> send_response(connection<Stream>& c, http::string_response& res)
{
    tcp_of(c.stream).expires_after(c.w.state()->cfg.timeouts.idle);
    auto [ec, n] = co_await beast::http::async_write(c.stream, res);
    co_return ec;
}

/**
 * The head serialised in `scratch` and `body` after it, as the buffers of one gathered write:
 * a small body is copied behind the head, a larger one is the second buffer.
 */
std::array<net::const_buffer, 2> prepared_buffers(std::string& scratch, net::const_buffer body)
{
    if (body.size() <= inline_body_size) {
        scratch.append(static_cast<const char*>(body.data()), body.size());
        body = {};
    }
    return {net::buffer(scratch), body};
}

/// A plain socket stream: its descriptor may be written directly (never a TLS one).
template <typename Stream>
constexpr bool is_plain_stream =
    std::is_same_v<Stream, tcp_stream> || std::is_same_v<Stream, upstream_stream>;

/// True when a send that did not wait left nothing to await: all of `buffers` went, or
/// the socket failed.
bool settled(const std::array<net::const_buffer, 2>& buffers, const boost::system::error_code& ec)
{
    return ec || net::buffer_size(buffers) == 0;
}

/// Writes the head serialised in `scratch`, and `body` after it, in one write.
template <typename Stream>
auto write_prepared(Stream& s, std::string& scratch, net::const_buffer body = {})
{
    // The operation itself, for the caller to await: a coroutine here would cost a frame
    // and a resumption per write, two writes per request.
    return net::async_write(s, prepared_buffers(scratch, body));
}

/// `write_prepared` for a head serialised as Beast holds it.
template <typename Stream, typename Head>
auto write_head(Stream& s, std::string& scratch, const Head& head, net::const_buffer body = {})
{
    scratch.clear();
    http::append_head(scratch, head);
    return write_prepared(s, scratch, body);
}

/// Facts kept for the access log line of one request.
struct exchange_record {
    clock::time_point start = clock::now();
    std::string method;
    std::string target;
    std::string host;
    unsigned version = 11;
    bool version_read = false; ///< `version` came from the request (the log's PROTO, else "-")
    unsigned status = 0;
    std::uint64_t bytes = 0;
    const config::route* route = nullptr; ///< named only when a log line is written
    std::string backend;
    std::uint64_t bytes_in = 0;  ///< request body bytes received
    bool body_unread = false;    ///< the body was not all sent: the client may still send it
    std::string_view error;      ///< the condition, when portico answered with an error page
    std::string_view served_by;  ///< route name when no route applies (the admin host)
};

/// Names a refused request in its record by its request line, when that is sound, so that
/// its log line says what was asked (as nginx's does) rather than "- -".
void note_request_line(exchange_record& rec, std::string_view head)
{
    if (const auto line = http::read_request_line(head)) {
        rec.method = std::string(line->method);
        rec.target = std::string(line->target);
        rec.version = line->version;
        rec.version_read = true;
    }
}

/// Counts an open tunnel in the worker's statistics for as long as it lives.
struct tunnel_count {
    admin::worker_stats& stats;
    explicit tunnel_count(admin::worker_stats& s) : stats(s) { stats.tunnel_opened(); }
    ~tunnel_count() { stats.tunnel_closed(); }
    tunnel_count(const tunnel_count&) = delete;
    tunnel_count& operator=(const tunnel_count&) = delete;
};

/// Records a finished request in the statistics and, when enabled, the access log.
void write_access_log(const client_info& info, const exchange_record& rec)
{
    log::access_record a;
    a.time = std::chrono::system_clock::now();
    a.client = info.client;
    a.host = rec.host;
    a.method = rec.method;
    a.target = rec.target;
    a.proto = rec.version_read ? proto_name(rec.version) : "-";
    a.status = rec.status;
    a.bytes = rec.bytes;
    a.duration_ms =
        std::chrono::duration<double, std::milli>(clock::now() - rec.start).count();
    // The name is assembled in a buffer the worker keeps, so that naming the route costs no
    // allocation per request.
    auto& route_name = info.w.route_name_scratch();
    if (rec.route != nullptr) {
        route_name.assign(rec.route->host);
        if (rec.route->path != "/") {
            route_name.append(rec.route->path);
        }
    } else {
        route_name.assign(rec.served_by);
    }
    a.route = route_name;
    a.backend = rec.backend;
    info.w.stats().record(a, rec.error, rec.bytes_in, rec.served_by.empty());
    if (log::enabled(log::level::info)) {
        log::access(a);
    }
}

/**
 * The port where a request on this connection works over https: its own if it came over
 * TLS; else a `tls: only` listener's, else its own if its listener serves TLS, else a
 * `tls: auto` listener's; "" when no listener serves TLS.
 */
std::string_view https_port_for(const client_info& info, const serving_state& state)
{
    // A plain request on a `tls: only` listener is answered where it came: that port serves
    // TLS, and another `tls: only` listener may be on another address.
    return info.tls || info.tls_required
               ? std::string_view(info.local_port)
               : state.https_port_from(info.local_port, info.listener_serves_tls);
}

/// `https://host:port/target` for the host as the client sent it (the port left out for 443).
std::string https_url(std::string_view port, std::string_view host_as_sent,
                      std::string_view target)
{
    const auto host = uri::normalize_host(host_as_sent).value_or("localhost");
    const bool is_v6 = host.find(':') != std::string::npos;
    // An absolute-form target ("http://a.localhost/x?y") keeps its path and query.
    if (!target.starts_with('/')) {
        const auto authority = target.find("://");
        const auto path = authority == std::string_view::npos
                              ? std::string_view::npos
                              : target.find_first_of("/?", authority + 3);
        target = path == std::string_view::npos ? std::string_view{} : target.substr(path);
    }
    return fmt::format("https://{}{}{}{}{}{}", is_v6 ? "[" : "", host, is_v6 ? "]" : "",
                       port == "443" ? "" : fmt::format(":{}", port),
                       target.starts_with('/') ? "" : "/", target);
}

/**
 * Sends the page for `details`, logs the request, and closes the connection gracefully. A
 * HEAD request gets the head alone, with the length the page would have.
 */
template <typename Stream>
task<void> send_error_page(connection<Stream>& c, const http::error_details& details, bool json,
                           exchange_record& rec, std::string_view allow = {})
{
    rec.error = to_string(details.error);
    auto res = http::make_error_response(details, json, rec.version);
    if (!allow.empty()) {
        res.set(beast::http::field::allow, allow);
    }
    rec.status = res.result_int();
    rec.bytes = res.body().size();
    if (rec.method == "HEAD") {
        res.body().clear(); // Content-Length stays: what a GET would have had
        rec.bytes = 0;
    }
    auto ec = co_await send_response(c, res);
    write_access_log(c.info, rec);
    if (!ec) {
        co_await lingering_close(c);
    }
}

/**
 * Ends a request whose client closed while it waited, its backend let go by the worker's
 * watch (decision 0018): nothing failed that a page could explain, and no one would read
 * one. Logged 499, as nginx does.
 */
template <typename Stream>
void let_client_go(connection<Stream>& c, exchange_record& rec)
{
    rec.status = 499;
    rec.bytes = 0;
    write_access_log(c.info, rec);
    tcp_of(c.stream).close();
}

/**
 * Answers with an error page, logs the request, and closes the connection gracefully.
 * Past the shutdown deadline whatever failed was cut by the deadline (a connect, a name's
 * resolve, a wait for the response, a body), not by the backend or the client: no page
 * blames either, the request is logged with no status and the connection closed, as the
 * deadline closes everything still open.
 */
template <typename Stream>
task<void> answer_error(connection<Stream>& c, const request_plan& plan, errc error, bool json,
                        exchange_record& rec, std::span<const std::string> tried = {})
{
    if (auto* body = std::exchange(c.info.body_in_flight, nullptr)) {
        co_await stop_body(*body);
    }
    if (c.w.is_past_shutdown_deadline()) {
        rec.status = 0;
        rec.bytes = 0;
        write_access_log(c.info, rec);
        tcp_of(c.stream).close(); // nothing more is waited for, a TLS close_notify included
        co_return;
    }
    if (c.info.entry->client_gone) {
        let_client_go(c, rec);
        co_return;
    }
    const auto& state = c.w.state();
    auto details = describe_error(*state, plan, error, c.info.tls ? "https" : "http", c.info.local_port);
    std::string route_name;
    if (plan.route != nullptr) {
        route_name = plan.route->name();
        details.route = route_name;
    }
    details.tried = tried;
    std::string url;
    if (error == errc::tls_required) {
        if (const auto port = https_port_for(c.info, *state); !port.empty()) {
            url = https_url(port, plan.host, rec.target);
            details.https_url = url;
        }
    }
    co_await send_error_page(c, details, json, rec);
}

/// Starts a step's read from `from` under `timeouts` (see `step_timeouts`).
template <typename From, typename To>
void before_read_step(From& from, To& to, const step_timeouts& timeouts)
{
    if (timeouts.read.count() == 0) {
        return;
    }
    if (!timeouts.beside_body) {
        tcp_of(from).expires_after(timeouts.read);
        tcp_of(to).expires_never();
    } else if (tcp_of(from).writing()) {
        tcp_of(from).expires_after(timeouts.read);
    }
}

/**
 * The steps of relaying a response: each write to the client bounded by `timeouts.idle`;
 * each read from the backend unbounded, unless the request's body was cut short: a backend
 * the cut misjudged may still be waiting for the rest, so each read waits at most
 * `timeouts.idle`.
 */
step_timeouts response_steps(const config::config& cfg, const exchange_record& rec)
{
    return {.read = rec.body_unread ? cfg.timeouts.idle : std::chrono::milliseconds(0),
            .write = cfg.timeouts.idle};
}

/**
 * Copies exactly `length` body bytes: first those already buffered, then from the socket,
 * each read written out before the next (bounded memory, streaming preserved).
 */
template <typename From, typename To>
task<boost::system::error_code> relay_exact(From& from, beast::flat_buffer& from_buffer, To& to,
                                            std::uint64_t length, char* chunk,
                                            std::size_t chunk_size, const step_timeouts& timeouts,
                                            std::uint64_t& relayed, bool& read_failed)
{
    while (length > 0) {
        std::size_t n = 0;
        if (from_buffer.size() > 0) {
            n = net::buffer_copy(net::buffer(chunk, std::min<std::uint64_t>(chunk_size, length)),
                                 from_buffer.data());
            from_buffer.consume(n);
        } else {
            before_read_step(from, to, timeouts);
            auto [ec, got] = co_await from.async_read_some(
                net::buffer(chunk, std::min<std::uint64_t>(chunk_size, length)));
            if (ec) {
                read_failed = true;
                co_return ec == net::error::eof ? beast::http::error::partial_message : ec;
            }
            n = got;
        }
        tcp_of(to).expires_after(timeouts.write);
        auto [wec, written] = co_await net::async_write(to, net::buffer(chunk, n));
        if (wec) {
            co_return wec;
        }
        relayed += written;
        length -= n;
    }
    co_return boost::system::error_code{};
}

/**
 * What a read that failed before a response head was complete reports: whatever ended it,
 * part of a head received means a broken response, never a connection that was closed
 * before it was used; EOF before any byte reads as Beast's parser would report it.
 */
boost::system::error_code head_read_failure(const boost::system::error_code& ec, bool had_bytes)
{
    if (had_bytes) {
        return beast::http::error::partial_message;
    }
    if (ec == net::error::eof) {
        return beast::http::error::end_of_stream;
    }
    return ec;
}

/// The length of the response head that `buffer` holds whole (through the empty line), or
/// 0; the search starts at `from`. A head whose lines end in bare LFs ends too, so that the
/// parser refuses it now rather than the client waiting for a CRLF that never comes.
std::size_t complete_head_length(const beast::flat_buffer& buffer, std::size_t from = 0)
{
    const auto data =
        std::string_view(static_cast<const char*>(buffer.data().data()), buffer.size());
    const auto end = http::find_head_end(data.substr(std::min(from, data.size())));
    return end == 0 ? 0 : from + end;
}

/**
 * "HTTP/1.1 200\r\n": a status line with neither a reason phrase nor the space before it,
 * which small servers send and nginx and Go take. RFC 9112 §4 lets the reason be empty, not
 * its separator; the space is put in so that both parsers read the line. Whether it did.
 */
bool restore_reason_separator(beast::flat_buffer& buffer)
{
    const auto data =
        std::string_view(static_cast<const char*>(buffer.data().data()), buffer.size());
    if (data.size() < 14 || !data.starts_with("HTTP/1.") || data[8] != ' ' ||
        data.substr(12, 2) != "\r\n") {
        return false;
    }
    for (std::size_t i = 9; i < 12; ++i) {
        if (data[i] < '0' || data[i] > '9') {
            return false;
        }
    }
    buffer.prepare(1);
    buffer.commit(1);
    auto* bytes = static_cast<char*>(buffer.data().data());
    std::memmove(bytes + 13, bytes + 12, buffer.size() - 13);
    bytes[12] = ' ';
    return true;
}

/// What a head or trailer with a field longer than Beast holds is refused as.
constexpr auto field_too_long = boost::system::errc::value_too_large;

/**
 * `parser.put`, returning the bytes it used. Beast keeps a field's name and value in 16-bit
 * lengths and throws for a longer one (the head and trailer limits allow more); here that is
 * the error `field_too_long`, for the connection to answer, instead of an exception through
 * the event loop that would end the process.
 */
template <bool IsRequest, typename Body>
std::size_t put_guarded(beast::http::parser<IsRequest, Body>& parser, net::const_buffer bytes,
                        boost::system::error_code& ec)
{
    try {
        return parser.put(bytes, ec);
    } catch (const std::length_error&) {
        ec = make_error_code(field_too_long);
        return 0;
    }
}

/// `put_guarded` of what `buffer` holds, consuming what it used.
template <bool IsRequest, typename Body>
void put_buffered(beast::http::parser<IsRequest, Body>& parser, beast::flat_buffer& buffer,
                  boost::system::error_code& ec)
{
    buffer.consume(put_guarded(parser, buffer.data(), ec));
}

/// The most bytes a body's framing (a chunk header, the trailer section) may hold back from
/// the parser; Beast sets no bound there, so an endless trailer would grow the buffer.
constexpr std::size_t framing_buffer_limit = 64 * 1024;

/**
 * Beast's `async_read_some` for a parser, written out so that its parse goes through
 * `put_buffered`: reads until the parser makes progress, the message ends or an error.
 */
template <typename Stream, bool IsRequest, typename Body>
task<boost::system::error_code> read_some_parsed(Stream& from, beast::flat_buffer& buffer,
                                                 beast::http::parser<IsRequest, Body>& parser)
{
    boost::system::error_code ec;
    std::size_t checked = 0; // bytes left unparsed that were looked at for a bare LF
    for (;;) {
        if (buffer.size() > 0) {
            const auto before = buffer.size();
            put_buffered(parser, buffer, ec);
            if (ec != beast::http::error::need_more) {
                co_return ec;
            }
            if (buffer.size() >= framing_buffer_limit) {
                co_return make_error_code(field_too_long);
            }
            // What a chunked body's parser leaves is a chunk line or the trailer section.
            if (buffer.size() != before) {
                checked = 0; // the parser took bytes: what is left starts anew
            }
            if (parser.is_header_done() && parser.chunked() &&
                http::has_bare_lf(std::string_view(static_cast<const char*>(buffer.data().data()),
                                                   buffer.size()),
                                  checked)) {
                co_return beast::http::error::bad_chunk;
            }
            checked = buffer.size();
        }
        auto [rec, n] = co_await from.async_read_some(buffer.prepare(beast::read_size(buffer, 65536)));
        buffer.commit(n);
        if (rec == net::error::eof) {
            if (!parser.got_some()) {
                co_return beast::http::error::end_of_stream;
            }
            ec = {};
            parser.put_eof(ec);
            co_return ec;
        }
        if (rec) {
            co_return rec;
        }
    }
}

/// Whether `bytes` can be the start of a status line: "HTTP/1." or the first bytes of it.
bool may_begin_status_line(std::string_view bytes) noexcept
{
    constexpr std::string_view start = "HTTP/1.";
    return bytes.substr(0, start.size()) == start.substr(0, std::min(bytes.size(), start.size()));
}

/**
 * Reads from a backend until `buffer` holds a complete response head (through the empty
 * line) and returns its length; 0 when none ends within `limit` bytes, which is left for the
 * full parser to report. EOF before a complete head reads as Beast's parser would report it.
 * Bytes that cannot begin a status line are `bad_version` at once: a route pointed at a
 * server of another protocol (Redis, SSH) may answer a line and keep the connection, and no
 * head would ever end.
 */
template <typename Upstream>
task<std::tuple<boost::system::error_code, std::size_t>>
read_response_head(Upstream& io, beast::flat_buffer& buffer, std::size_t limit)
{
    // The first read asks for little: a pooled connection keeps this buffer while it waits.
    std::size_t scanned = 0;
    for (;;) {
        if (const auto length = complete_head_length(buffer, scanned > 3 ? scanned - 3 : 0)) {
            co_return std::tuple{boost::system::error_code{}, length};
        }
        if (!may_begin_status_line(
                std::string_view(static_cast<const char*>(buffer.data().data()), buffer.size()))) {
            co_return std::tuple{make_error_code(beast::http::error::bad_version), std::size_t{0}};
        }
        scanned = buffer.size();
        if (scanned >= limit) {
            co_return std::tuple{boost::system::error_code{}, std::size_t{0}};
        }
        const auto step = scanned == 0 ? upstream_connection::first_read_size : head_read_size;
        auto [ec, n] = co_await io.async_read_some(buffer.prepare(std::min(step, limit - scanned)));
        if (ec) {
            co_return std::tuple{head_read_failure(ec, scanned > 0), std::size_t{0}};
        }
        buffer.commit(n);
    }
}

/// Both ends of a pipe, closed however the relay through it ends.
struct pipe_pair {
    int read_end = -1;
    int write_end = -1;
    pipe_pair()
    {
        int fds[2];
        if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
            read_end = fds[0];
            write_end = fds[1];
        }
    }
    ~pipe_pair()
    {
        if (read_end >= 0) {
            ::close(read_end);
            ::close(write_end);
        }
    }
    pipe_pair(const pipe_pair&) = delete;
    pipe_pair& operator=(const pipe_pair&) = delete;
};

/**
 * `relay_exact` for a body between two plain sockets, through a pipe with splice(2): the
 * kernel hands the pages from one socket to the other instead of copying them through a
 * buffer here. Memory stays bounded by the pipe (64 KiB). Sets `unsupported`, having moved
 * nothing, when no pipe could be made.
 */
task<boost::system::error_code> splice_exact(upstream_stream& from, beast::flat_buffer& from_buffer,
                                             tcp_stream& to, std::uint64_t length,
                                             const step_timeouts& timeouts, std::uint64_t& relayed,
                                             bool& read_failed, bool& unsupported)
{
    const auto write_timeout = timeouts.write;
    pipe_pair pipe;
    if (pipe.read_end < 0) {
        unsupported = true;
        co_return boost::system::error_code{};
    }
    if (from_buffer.size() > 0) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(from_buffer.size(), length));
        to.expires_after(write_timeout);
        auto [wec, written] = co_await net::async_write(to, net::buffer(from_buffer.data(), n));
        if (wec) {
            co_return wec;
        }
        from_buffer.consume(n);
        relayed += written;
        length -= n;
    }
    from.make_descriptor_non_blocking();
    to.make_descriptor_non_blocking();
    std::size_t in_pipe = 0;
    while (length > 0 || in_pipe > 0) {
        // Either socket may have been closed by its deadline during the last wait (beside a
        // request body, that body's steps set them): the descriptor's number may already
        // belong to another connection, so it is looked up again, never kept.
        const int in = from.descriptor();
        const int out = to.descriptor();
        if (in < 0 || out < 0) {
            read_failed = in < 0;
            co_return beast::error::timeout;
        }
        bool moved = false;
        if (length > 0 && in_pipe < body_chunk_size) {
            const auto n = ::splice(in, nullptr, pipe.write_end, nullptr,
                                    static_cast<std::size_t>(std::min<std::uint64_t>(
                                        length, body_chunk_size - in_pipe)),
                                    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                in_pipe += static_cast<std::size_t>(n);
                length -= static_cast<std::uint64_t>(n);
                moved = true;
                if (timeouts.beside_body && timeouts.read.count() > 0 && from.writing()) {
                    // The answer moves: a body write the backend does not take meanwhile
                    // waits on (`step_timeouts`).
                    from.expires_after(timeouts.read);
                }
            } else if (n == 0) {
                read_failed = true;
                co_return beast::http::error::partial_message;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                read_failed = true;
                co_return boost::system::error_code(errno, boost::system::system_category());
            }
        }
        if (in_pipe > 0) {
            const auto n = ::splice(pipe.read_end, nullptr, out, nullptr, in_pipe,
                                    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                in_pipe -= static_cast<std::size_t>(n);
                relayed += static_cast<std::uint64_t>(n);
                moved = true;
                if (timeouts.beside_body) {
                    // The client takes the answer: a read of its body that waits meanwhile
                    // waits on, as beside a copied answer (`step_timeouts`).
                    to.expires_after(write_timeout);
                }
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                co_return boost::system::error_code(errno, boost::system::system_category());
            }
        }
        if (moved) {
            continue;
        }
        if (in_pipe > 0) {
            // The client is not taking bytes: wait for it within the write deadline.
            to.expires_after(write_timeout);
            auto [wec] = co_await to.async_wait_writable();
            if (wec) {
                co_return wec;
            }
        } else {
            if (timeouts.read.count() > 0 && !timeouts.beside_body) {
                from.expires_after(timeouts.read); // the client has nothing pending here
            }
            auto [rec] = co_await from.async_wait_readable();
            if (rec) {
                read_failed = true;
                co_return rec;
            }
        }
    }
    co_return boost::system::error_code{};
}

/**
 * Moves a Content-Length body of `length` bytes (the first of them possibly in
 * `from_buffer`) unchanged: it goes out with the same length, so its bytes need no parsing
 * or re-framing.
 */
template <typename From, typename To>
task<boost::system::error_code> relay_length(From& from, beast::flat_buffer& from_buffer, To& to,
                                             std::uint64_t length, const step_timeouts& timeouts,
                                             std::uint64_t& relayed, bool& read_failed)
{
    read_failed = false;
    if constexpr (std::is_same_v<From, upstream_stream> && std::is_same_v<To, tcp_stream>) {
        // A pipe costs four system calls to make and close: worth it for a large body.
        if (length > body_chunk_size) {
            bool unsupported = false;
            auto ec = co_await splice_exact(from, from_buffer, to, length, timeouts, relayed,
                                            read_failed, unsupported);
            if (!unsupported) {
                co_return ec;
            }
        }
    }
    // Straight from socket to socket; a small body gets a small buffer, and none is zeroed
    // first.
    const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(length, body_chunk_size));
    auto chunk = std::make_unique_for_overwrite<char[]>(size);
    auto ec = co_await relay_exact(from, from_buffer, to, length, chunk.get(), size, timeouts,
                                   relayed, read_failed);
    co_return ec;
}

/**
 * Moves a message body from `from` to `to`, one chunk at a time, re-framing it with the
 * serializer (Content-Length as is, anything else chunked or close-delimited as set on the
 * outgoing head). Each chunk is written as soon as it is read, so streamed responses (SSE,
 * long polling) are not held back. `limit` (0 = none) caps the body size. A chunked body's
 * trailer fields go on when it stays chunked, filtered by the route's `trailer_rules`.
 */
template <bool IsRequest, typename From, typename To>
task<boost::system::error_code>
relay_body(From& from, beast::flat_buffer& from_buffer,
           beast::http::parser<IsRequest, buffer_body>& parser, To& to,
           beast::http::serializer<IsRequest, buffer_body>& serializer, std::uint64_t limit,
           const step_timeouts& timeouts, std::uint64_t& relayed, bool& read_failed,
           http::header_rule_view trailer_rules = {},
           std::span<const std::string> connection_named = {})
{
    auto& body = parser.get().body();
    read_failed = false;
    if (const auto remaining = parser.content_length_remaining(); remaining && !parser.chunked()) {
        auto ec = co_await relay_length(from, from_buffer, to, *remaining, timeouts, relayed,
                                        read_failed);
        co_return ec;
    }
    // The parser adds a trailer section's fields to the head's, each beside any field of its
    // name: the trailer is the fields that were not there before the body.
    std::vector<const http::fields::value_type*> head_lines;
    const bool trailers_pass = parser.chunked() && serializer.get().chunked();
    if (trailers_pass) {
        for (const auto& line : parser.get().base()) {
            head_lines.push_back(&line);
        }
        std::sort(head_lines.begin(), head_lines.end());
    }
    const auto has_trailers = [&] {
        const auto& f = parser.get().base();
        return static_cast<std::size_t>(std::distance(f.begin(), f.end())) > head_lines.size();
    };
    bool trailers = false;
    auto chunk = std::make_unique_for_overwrite<char[]>(body_chunk_size);
    // Beast reads as much as the buffer's free capacity: give it room for a whole chunk.
    from_buffer.reserve(body_chunk_size);
    for (;;) {
        if (!parser.is_done()) {
            body.data = chunk.get();
            body.size = body_chunk_size;
            before_read_step(from, to, timeouts);
            auto ec = co_await read_some_parsed(from, from_buffer, parser);
            if (ec == beast::http::error::need_buffer) {
                ec = {};
            }
            if (ec) {
                read_failed = true;
                co_return ec;
            }
            const auto produced = body_chunk_size - body.size;
            relayed += produced;
            if (limit != 0 && relayed > limit) {
                read_failed = true;
                co_return make_error_code(errc::body_too_large);
            }
            body.size = produced;
            // No bytes is no buffer: Beast's chunked serializer frames an empty buffer as a
            // chunk of its own, "0\r\n\r\n", which ahead of the last chunk ends the body
            // twice, and the peer reads the second as the start of the next message.
            body.data = produced > 0 ? chunk.get() : nullptr;
            body.more = !parser.is_done();
            // The serializer would end the body with a bare last chunk: with trailers it
            // is written below instead.
            trailers = !body.more && trailers_pass && has_trailers();
            if (produced == 0 && body.more) {
                continue;
            }
            body.more = body.more || trailers;
        } else {
            body.data = nullptr;
            body.size = 0;
            body.more = false;
        }
        tcp_of(to).expires_after(timeouts.write);
        if (body.data != nullptr || !trailers) {
            auto [wec, wn] = co_await beast::http::async_write(to, serializer);
            if (wec == beast::http::error::need_buffer) {
                wec = {};
            }
            if (wec) {
                co_return wec;
            }
        }
        if (trailers) {
            std::string last;
            http::append_last_chunk(last, parser.get().base(), head_lines, trailer_rules,
                                    connection_named);
            auto [tec, tn] = co_await net::async_write(to, net::buffer(last));
            co_return tec;
        }
        if (serializer.is_done()) {
            co_return boost::system::error_code{};
        }
    }
}

/// A tunnel's shared fate: set when it must end in both directions.
struct tunnel_fate {
    bool broken = false;
};

/// Ends a tunnel in both directions. The sockets are closed, not only cancelled: an operation
/// that had completed but not yet run, or one a TLS stream starts inside its own, would miss
/// a cancel and go on. A plain close still sends what is queued, then a FIN.
template <typename From, typename To>
void break_tunnel(From& from, To& to, tunnel_fate& fate)
{
    fate.broken = true;
    tcp_of(from).close();
    tcp_of(to).close();
}

/**
 * Copies bytes one way until EOF, then shuts down the other side's sending direction: a
 * half-close passes on, and the other direction goes on (decision 0018).
 *
 * A read that fails (a reset) means `from` is gone: all it sent has been passed on, and
 * nothing can reach it any more, so the whole tunnel ends. A write that fails means `to`
 * is gone: this direction ends, and the other one drains what `to` sent before it went (the
 * kernel still gives it out) until its own read fails. A write that makes no progress for
 * `write_timeout` (a side that stopped reading) fails too, and that side is reset, so no
 * direction waits for good. The shutdown deadline (`w`) ends the whole tunnel.
 */
template <typename From, typename To>
task<void> pump(From& from, To& to, std::uint64_t& moved, tunnel_fate& fate, const worker& w,
                std::chrono::steady_clock::duration write_timeout)
{
    const auto over = [&] { return fate.broken || w.is_past_shutdown_deadline(); };
    auto chunk = std::make_unique_for_overwrite<char[]>(body_chunk_size);
    for (;;) {
        auto [ec, n] = co_await from.async_read_some(net::buffer(chunk.get(), body_chunk_size));
        if (over()) {
            break_tunnel(from, to, fate);
            co_return;
        }
        if (ec == net::error::eof || ec == net::ssl::error::stream_truncated) {
            break;
        }
        if (ec) {
            break_tunnel(from, to, fate);
            co_return;
        }
        for (std::size_t done = 0; done < n;) {
            tcp_of(to).expires_after(write_timeout);
            auto [wec, wn] = co_await to.async_write_some(net::buffer(chunk.get() + done, n - done));
            tcp_of(to).expires_never();
            done += wn;
            moved += wn;
            if (over() || wec == net::error::operation_aborted) {
                break_tunnel(from, to, fate);
                co_return;
            }
            if (wec) {
                co_return;
            }
        }
    }
    boost::system::error_code ignored;
    tcp_of(to).shutdown(net::socket_base::shutdown_send, ignored);
}

/// Writes bytes already buffered on one side to the other before a tunnel starts.
template <typename To>
task<boost::system::error_code> flush_buffered(beast::flat_buffer& buffered, To& to)
{
    if (buffered.size() == 0) {
        co_return boost::system::error_code{};
    }
    auto [ec, n] = co_await net::async_write(to, buffered.data());
    buffered.consume(n);
    co_return ec;
}

/// Bytes a tunnel moved each way.
struct tunnel_totals {
    std::uint64_t a_to_b = 0;
    std::uint64_t b_to_a = 0;
};

/**
 * A two-way byte tunnel (upgrades, TLS passthrough) with no idle timeout of its own: bytes
 * already read on either side go first, then both directions run until each has seen EOF
 * (or a side failed, see `pump`). `write_timeout` bounds each write that cannot go on.
 */
template <typename A, typename B>
task<tunnel_totals> run_tunnel(A& a, beast::flat_buffer& a_pending, B& b,
                               beast::flat_buffer& b_pending, const worker& w,
                               std::chrono::steady_clock::duration write_timeout)
{
    tunnel_totals totals;
    const auto a_buffered = a_pending.size();
    const auto b_buffered = b_pending.size();
    tcp_of(a).expires_after(write_timeout);
    tcp_of(b).expires_after(write_timeout);
    const auto ec1 = co_await flush_buffered(a_pending, b);
    const auto ec2 = co_await flush_buffered(b_pending, a);
    totals.a_to_b = a_buffered - a_pending.size();
    totals.b_to_a = b_buffered - b_pending.size();
    tcp_of(a).expires_never();
    tcp_of(b).expires_never();
    if (!ec1 && !ec2) {
        tunnel_fate fate;
        co_await (pump(a, b, totals.a_to_b, fate, w, write_timeout) &&
                  pump(b, a, totals.b_to_a, fate, w, write_timeout));
    }
    co_return totals;
}

/// The header rules of a route as the header policy takes them.
http::header_rule_view rules_of(const config::header_rules& rules)
{
    return {rules.set, rules.remove};
}

/// Validates the framing of a parsed request head (RFC 9112 §6); nullopt when sound.
std::optional<std::string> framing_defect(const request_parser& parser,
                                          const http::request_lines& lines)
{
    if (lines.hosts > 1) {
        return "more than one Host header";
    }
    if (lines.transfer_encodings > 0) {
        if (parser.get().version() < 11) {
            return "Transfer-Encoding in an HTTP/1.0 request";
        }
        // Only a lone "chunked" frames a request body unambiguously; anything else (gzip,
        // identity, chunked twice) is read differently by different servers (RFC 9112
        // §6.3 item 4).
        if (lines.transfer_encodings > 1 || !http::is_chunked_alone(lines.transfer_encoding)) {
            return "unsupported Transfer-Encoding";
        }
    }
    return std::nullopt;
}

/**
 * Whether a response names a transfer coding other than a lone `chunked` (gzip, or a coding
 * under chunked): portico re-frames bodies and decodes no other coding, so that body would
 * reach the client with the coding dropped from its head.
 */
template <typename Fields>
bool has_unsupported_transfer_coding(const Fields& head)
{
    const auto [first, last] = head.equal_range(beast::http::field::transfer_encoding);
    if (first == last) {
        return false;
    }
    return std::next(first) != last || !http::is_chunked_alone(first->value());
}

/// What the client's request head said before it was rewritten for the backend.
struct request_traits {
    bool keep_alive = true;
    bool upgrade = false;
    bool expects_continue = false;
    bool replayable = false; ///< may be sent again on another connection (no body, idempotent)
    bool head = false;       ///< a HEAD request: the response has no body whatever it says
    bool restate_length = false; ///< Content-Length must go upstream as one value
    bool drop_expect = false;    ///< an Expect that is not to be acted on nor passed on
};

request_traits traits_of(const request_parser& parser, const http::request_lines& lines)
{
    const auto& req = parser.get();
    request_traits traits;
    traits.keep_alive = parser.keep_alive();
    traits.upgrade = lines.tunnel_upgrade;
    // An HTTP/1.0 client is never sent a 1xx; it ignores the expectation (RFC 9110 §10.1.1,
    // §15.2) and sends its body anyway.
    traits.expects_continue =
        req.version() >= 11 && beast::iequals(lines.expect, "100-continue");
    traits.replayable = parser.is_done() && is_idempotent(req.method());
    traits.head = req.method() == beast::http::verb::head;
    traits.restate_length = lines.content_length_repeated;
    // Upstream the request is HTTP/1.1, where the backend would act on it.
    traits.drop_expect = lines.has_expect && req.version() < 11;
    return traits;
}

/**
 * Logs an exchange once its response body has been relayed; false when the body did not get
 * through. A backend that broke off mid-body is named in a warning and counted among the
 * route's upstream errors: the head is gone, so closing without completing the framing is
 * the only signal left for the client.
 */
bool finish_response_body(client_info& info, exchange_record& rec,
                          const config::route& route, const boost::system::error_code& ec,
                          bool read_failed)
{
    if (ec && read_failed) {
        info.response_cut = true;
        if (!info.tls) {
            // Closed with a reset, not a FIN: for a body delimited by the close (an HTTP/1.0
            // client, a backend's unframed body) a FIN would say it is whole. Over TLS the
            // missing close_notify says it (`serve_tls`).
            info.entry->stream->reset_on_close();
        }
    }
    // A body the abandon watch cut (the client left) or the shutdown deadline cut is no
    // failure of the backend's; nor is one cut because the request body sent beside it
    // failed on the client's side (gone, broken, over the limit), which shut the backend's
    // connection (`send_request_body`).
    const body_job* body = info.body_in_flight;
    const bool client_body_failed =
        body != nullptr && body->finished && body->result && body->read_failed;
    const bool backend_failed = ec && read_failed && !info.entry->client_gone &&
                                !info.w.is_past_shutdown_deadline() && !client_body_failed;
    if (backend_failed) {
        rec.error = "upstream_aborted";
    } else if (ec && client_body_failed && !is_quiet_close(body->result)) {
        rec.error = body->result == errc::body_too_large ? "body_too_large" : "bad_request";
    }
    write_access_log(info, rec);
    if (!ec) {
        return true;
    }
    if (backend_failed) {
        PORTICO_LOG(log::level::warn, "upstream_aborted", {"conn", info.id},
                    {"backend", route.to.text}, {"error", ec.message()});
    }
    return false;
}

/// Fills `plan.detail` for a backend that failed before its response head was complete.
void explain_upstream_failure(const boost::system::error_code& failure, request_plan& plan)
{
    if (classify_upstream_failure(failure) == errc::upstream_timeout) {
        plan.detail.clear();
        return;
    }
    // The parser's own errors, but for an early end, mean the head came and was refused.
    const bool refused_head =
        failure.category() ==
            make_error_code(beast::http::error::end_of_stream).category() &&
        failure != beast::http::error::end_of_stream &&
        failure != beast::http::error::partial_message;
    if (failure == beast::http::error::header_limit) {
        plan.detail = "its response head is larger than portico reads (limits.header_bytes, "
                      "and at least 64 KiB)";
    } else if (failure == field_too_long) {
        plan.detail = "its response head has a field longer than 65,533 bytes, the most one "
                      "field may hold";
    } else if (refused_head) {
        plan.detail =
            fmt::format("its response head is not valid HTTP/1.1 ({})", failure.message());
    } else if (classify_upstream_failure(failure) == errc::upstream_tls) {
        plan.detail = fmt::format("the backend ended the TLS session ({})", failure.message());
    } else {
        plan.detail =
            fmt::format("the backend closed or broke the connection ({})", failure.message());
    }
}

/**
 * What a failure to read a response head means. Sets `retry` and returns false when the
 * request may be sent again: a pooled connection the backend closed after the pool checked
 * it, nothing came back (not even an interim response), and the request has no body and an
 * idempotent method. Otherwise fills `plan.detail` and returns true: the
 * client gets a 502 or 504 page.
 */
bool response_head_failed(boost::system::error_code failure, const upstream_connection& up,
                          const request_traits& traits, request_plan& plan, bool& retry,
                          bool interim_received = false)
{
    if (up.reused && traits.replayable && !interim_received && is_stale_close(failure)) {
        retry = true;
        return false;
    }
    explain_upstream_failure(failure, plan);
    return true;
}

/// How sending a request body ended.
enum class body_outcome {
    complete,  ///< all of it reached the backend
    cut_short, ///< the backend stopped taking it; its response may still come
    answered,  ///< the client got an error page or went away: the exchange is over
    streaming, ///< the backend answered first: the body goes on beside its response
};

/// Waits until the body's relay has ended.
task<void> wait_for_body(body_job& job)
{
    if (!job.finished) {
        co_await job.finished_timer.async_wait(as_task);
    }
}

/// Stops the body's relay, if it still runs, and waits until it has ended.
task<void> stop_body(body_job& job)
{
    if (!job.finished) {
        job.stop.emit(net::cancellation_type::terminal);
        co_await wait_for_body(job);
    }
}

/**
 * Whether `bytes` begin with the status line of an interim response (100 Continue, 103
 * Early Hints: sent before a backend reads the body): "HTTP/1.x 1NN", not 101, which
 * switches protocols. Twelve bytes tell; fewer never do.
 */
bool starts_interim_response(std::string_view bytes)
{
    return bytes.size() >= 12 && bytes.starts_with("HTTP/1.") && bytes[8] == ' ' &&
           bytes[9] == '1' && bytes.substr(9, 3) != "101";
}

/// The length of the complete interim response at the start of `bytes`, or 0.
std::size_t interim_response_length(std::string_view bytes)
{
    if (!starts_interim_response(bytes)) {
        return 0;
    }
    const auto end = bytes.find("\r\n\r\n");
    return end == std::string_view::npos ? 0 : end + 4;
}

/**
 * Watches the backend while the request body is on its way. Interim responses are read and
 * dropped (portico answers the client's `Expect` itself). When a final response begins, its
 * bytes stay in `buffer`, `spoke` is set and the watch ends: the answer is relayed while the
 * body goes on (a handler that answers at once and reads the body after, an echo, progress
 * events), and a backend that answered and stopped reading (a 413, a 401) has its answer
 * relayed at once. Sets `failure` when the backend closed or broke the connection instead:
 * Asio's reactor then reads that socket again only on a new event, which a closed connection
 * does not give, so that failure must be answered without another read. Cancelled when the
 * body is all sent first.
 */
template <typename Upstream>
task<void> watch_for_early_response(Upstream& io, beast::flat_buffer& buffer, bool& spoke,
                                    boost::system::error_code& failure)
{
    for (;;) {
        const auto bytes =
            std::string_view(static_cast<const char*>(buffer.data().data()), buffer.size());
        if (const auto interim = interim_response_length(bytes)) {
            buffer.consume(interim);
            continue;
        }
        // Anything but an interim response (a final status, bytes that are no response
        // head, or an interim head that grows past any real one without ending) answers
        // the request; the parser says what is wrong with it, if anything.
        if (bytes.size() >= 12 &&
            (!starts_interim_response(bytes) || bytes.size() > head_read_size)) {
            break;
        }
        auto [ec, n] = co_await io.async_read_some(
            buffer.prepare(upstream_connection::first_read_size));
        buffer.commit(n);
        if (ec == net::error::operation_aborted && n == 0) {
            co_return;
        }
        if (ec) {
            spoke = true;
            failure = ec;
            co_return;
        }
    }
    spoke = true;
}

/**
 * Sends a request's body to the backend (after `100 Continue` when the client waits for
 * it), re-framed by `writer` when chunked. A backend may answer before it has read the whole
 * body: then `streaming` is returned with the body still going on in `job`, and the answer
 * is relayed beside it (decision 0014). A coroutine of its own so that a bodiless request's
 * exchange frame stays small.
 */
template <typename Stream, typename Upstream>
task<body_outcome> send_request_body(connection<Stream>& c, request_parser& parser,
                                     request_plan& plan, exchange_record& rec, bool json,
                                     bool send_continue, bool upgrade, Upstream& io,
                                     beast::flat_buffer& response_buffer,
                                     beast::http::serializer<true, buffer_body>& writer,
                                     std::unique_ptr<body_job>& job)
{
    const auto& cfg = c.state->cfg;
    if (send_continue) {
        static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";
        auto [cec, cn] = co_await net::async_write(c.stream, net::buffer(continue_line));
        if (cec) {
            co_return body_outcome::answered;
        }
    }
    std::uint64_t sent = 0;
    bool read_failed = false;
    bool backend_spoke = false;
    boost::system::error_code backend_failure;
    // Each read of the body waits up to `timeouts.idle` for the client, so an upload of any
    // length goes on as long as its bytes keep coming.
    const step_timeouts timeouts{.read = cfg.timeouts.idle, .write = cfg.timeouts.idle};
    const auto trailer_rules = rules_of(plan.route->request_headers);
    boost::system::error_code bec;
    const auto remaining = parser.content_length_remaining();
    if (upgrade || (remaining && !parser.chunked() && *remaining <= c.buffer.size() &&
                    *remaining <= inline_body_size)) {
        // A small body that came whole with its head goes out in one write the socket takes
        // at once: there is no wait for a response to cut short. The body of an upgrade
        // request is sent whole before the tunnel, which carries what follows it.
        bec = co_await relay_body(c.stream, c.buffer, parser, io, writer, cfg.limits.body_bytes,
                                  timeouts, sent, read_failed, trailer_rules,
                                  plan.connection_named);
    } else {
        // The body's relay runs on its own, so that it can go on beside an answer.
        job = std::make_unique<body_job>(tcp_of(io).get_executor());
        auto& j = *job;
        j.body_steps = timeouts;
        j.answer_steps = {
            .read = cfg.timeouts.idle, .write = cfg.timeouts.idle, .beside_body = true};
        net::co_spawn(
            tcp_of(io).get_executor(),
            relay_body(c.stream, c.buffer, parser, io, writer, cfg.limits.body_bytes, j.body_steps,
                       rec.bytes_in, j.read_failed, trailer_rules, plan.connection_named),
            net::bind_cancellation_slot(
                j.stop.slot(), [&j, &io](std::exception_ptr e, boost::system::error_code ec) {
                    if (e) {
                        try {
                            std::rethrow_exception(e);
                        } catch (const std::exception& failure) {
                            PORTICO_LOG(log::level::error, "request_body_failed",
                                        {"error", failure.what()});
                        }
                    }
                    j.result = e ? make_error_code(net::error::fault) : ec;
                    j.finished = true;
                    j.finished_timer.cancel();
                    if (j.streaming && j.result) {
                        // The answer is under way, and no page can say what went wrong with
                        // the body (a client gone, a broken or too large body): the exchange
                        // ends, and the client sees its connection close (SPEC).
                        boost::system::error_code ignored;
                        tcp_of(io).shutdown(net::socket_base::shutdown_both, ignored);
                    } else if (j.streaming) {
                        // The backend has the whole request: its answer now takes as long as
                        // any other may (a long pause after an early head is work, not a
                        // backend waiting for bytes that do not come).
                        j.answer_steps.read = std::chrono::milliseconds(0);
                        if (j.answer_read_bound.count() > 0) {
                            tcp_of(io).expires_after(j.answer_read_bound);
                        } else {
                            tcp_of(io).expires_never();
                        }
                    }
                }));
        auto first =
            co_await (wait_for_body(j) || watch_for_early_response(io, response_buffer,
                                                                   backend_spoke, backend_failure));
        if (first.index() == 1 && backend_spoke && !backend_failure && !j.finished) {
            j.streaming = true;
            co_return body_outcome::streaming;
        }
        // The body ended first, or the backend broke the connection: then the body is stopped
        // wherever it was.
        co_await stop_body(j);
        bec = j.result;
        sent = rec.bytes_in;
        read_failed = j.read_failed;
    }
    rec.bytes_in = sent;
    if (c.info.entry->client_gone) {
        // The abandon watch cancelled the body's write: the client is gone, and the backend
        // is let go now rather than waited on for the rest of a body that will not come.
        let_client_go(c, rec);
        co_return body_outcome::answered;
    }
    if (backend_failure) {
        // Bytes of a head received and then a close make a broken response; the write
        // deadline, a backend that took none of the body for `timeouts.idle`, stays a timeout.
        const auto failure = head_read_failure(
            backend_failure,
            response_buffer.size() > 0 && backend_failure != beast::error::timeout);
        explain_upstream_failure(failure, plan);
        // The backend's deadline runs only while a write of the body waits.
        plan.body_not_taken = failure == beast::error::timeout;
        co_await answer_error(c, plan, classify_upstream_failure(failure), json, rec);
        co_return body_outcome::answered;
    }
    if (bec == errc::body_too_large) {
        co_await answer_error(c, plan, errc::body_too_large, json, rec);
        co_return body_outcome::answered;
    }
    // A client that went quiet mid-upload had its socket closed at the deadline: an answer
    // the backend gave meanwhile can no longer reach it, and the request is its 408.
    const bool client_quiet = read_failed && bec == beast::error::timeout;
    if (bec && backend_spoke && !client_quiet) {
        co_return body_outcome::cut_short;
    }
    if (bec && read_failed) {
        // The client sent a broken body, went away or went quiet: the backend gets a
        // truncated request and the connection, nothing else. A client that is still there
        // is told why; either way the request is logged (408 for the quiet one, as nginx).
        // The shutdown deadline's cut is no fault of the client's (`answer_error`).
        rec.status = bec == beast::error::timeout ? 408 : 400;
        if (!is_quiet_close(bec) || c.w.is_past_shutdown_deadline()) {
            co_await answer_error(c, plan, errc::bad_request, json, rec);
        } else {
            write_access_log(c.info, rec);
        }
        co_return body_outcome::answered;
    }
    co_return bec ? body_outcome::cut_short : body_outcome::complete;
}

/**
 * The rest of `exchange` for a response head that `parse_simple_response` left to Beast's
 * parser (interim and 101 responses, HEAD, chunked or close-delimited bodies, anything
 * unusual), reading from the bytes already buffered. A coroutine of its own so that the
 * common path's frame does not carry the parser and serializers.
 */
template <typename Stream, typename Upstream>
task<bool> relay_parsed_response(connection<Stream>& c, request_plan& plan, exchange_record& rec,
                                 bool json, const request_traits& traits, upstream_connection& up,
                                 Upstream& io, bool request_complete,
                                 std::size_t response_header_limit, bool& retry, bool& release,
                                 body_job* beside = nullptr)
{
    const auto& cfg = c.state->cfg;
    const auto& route = *plan.route;
    const bool client_keep_alive = traits.keep_alive;
    const bool upgrade = traits.upgrade;
    // Read the response head. Interim responses (1xx but 101) restart the upstream deadline
    // (a backend may send them as a heartbeat); 103 Early Hints goes on to an HTTP/1.1
    // client, whose browser can start loading what it names, and the others are dropped:
    // portico answers Expect itself, and 102 is a heartbeat of this hop.
    std::optional<response_parser> response;
    bool interim_received = false;
    // While a body goes on beside the answer, its relay sets the backend's deadline.
    const auto body_in_flight = [beside] { return beside != nullptr && !beside->finished; };
    for (;;) {
        if (interim_received && !body_in_flight()) {
            if (cfg.timeouts.upstream.count() > 0) {
                tcp_of(io).expires_after(cfg.timeouts.upstream);
            }
        }
        response.emplace();
        response->body_limit(boost::none);
        response->header_limit(static_cast<std::uint32_t>(response_header_limit));
        if (traits.head) {
            response->skip(true);
        }
        // The whole head is read first so that a status line without a reason phrase can be
        // mended before Beast's parser, which wants its separator, sees it.
        boost::system::error_code rhec;
        std::size_t head_length = complete_head_length(up.buffer);
        if (head_length == 0) {
            std::tie(rhec, head_length) =
                co_await read_response_head(io, up.buffer, response_header_limit);
        }
        if (!rhec && head_length != 0) {
            restore_reason_separator(up.buffer);
        }
        if (!rhec) {
            // The whole head is buffered (or more than the limit, which the parser reports).
            put_buffered(*response, up.buffer, rhec);
            if (rhec == beast::http::error::need_more) {
                rhec = beast::http::error::header_limit;
            }
        }
        if (rhec) {
            if (response_head_failed(rhec, up, traits, plan, retry, interim_received)) {
                co_await answer_error(c, plan, classify_upstream_failure(rhec), json, rec);
            }
            co_return false;
        }
        const auto code = response->get().result_int();
        if (code >= 100 && code < 200 && code != 101) {
            interim_received = true;
            // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
            if (code == 103 && rec.version >= 11) {
                // A 1xx has no content (RFC 9110 §8.6): a length in it would mislead.
                response->get().erase(beast::http::field::content_length);
                auto& hints = empty_head(c.info);
                http::append_downstream_response(hints, response->get().base(), 11, true,
                                                 rules_of(route.response_headers));
                tcp_of(c.stream).expires_after(cfg.timeouts.idle);
                auto [wec, wn] = co_await net::async_write(c.stream, net::buffer(hints));
                if (wec) {
                    write_access_log(c.info, rec);
                    co_return false;
                }
            }
            continue;
        }
        break;
    }
    auto& res = response->get();

    if (res.result() == beast::http::status::switching_protocols) {
        if (!upgrade) {
            plan.detail = "the backend switched protocols without an Upgrade request";
            co_await answer_error(c, plan, errc::upstream_protocol, json, rec);
            co_return false;
        }
        http::prepare_downstream_response(res.base(), true, rules_of(route.response_headers));
        res.version(11);
        beast::http::serializer<false, buffer_body> head_writer{res};
        tcp_of(c.stream).expires_after(cfg.timeouts.idle);
        auto [wec, wn] = co_await beast::http::async_write_header(c.stream, head_writer);
        rec.status = 101;
        write_access_log(c.info, rec);
        if (!wec) {
            c.info.entry->tunnel = true;
            tunnel_count counted(c.w.stats());
            co_await run_tunnel(c.stream, c.buffer, io, up.buffer, c.w, cfg.timeouts.idle);
        }
        co_return false;
    }

    if (has_unsupported_transfer_coding(res.base())) {
        plan.detail = fmt::format("the backend's response uses Transfer-Encoding: {}, which "
                                  "portico does not decode",
                                  std::string_view(res[beast::http::field::transfer_encoding]));
        co_await answer_error(c, plan, errc::upstream_protocol, json, rec);
        co_return false;
    }
    const bool framed_body = response->content_length().has_value() || response->is_done();
    // Fields the backend's Connection named, hop-by-hop in its trailer section too.
    std::vector<std::string> connection_named;
    bool keep_alive = client_keep_alive && !c.w.is_draining() && request_complete;
    if (framed_body) {
        // The head goes out as it came, framing included, less what the policy drops: it is
        // written from the parsed fields without rewriting them. Repeated Content-Length
        // values that agree (the parser took them, in lines or a list) go on as one
        // (RFC 9110 §8.6).
        if (const auto length = response->content_length()) {
            const auto text = std::to_string(*length);
            if (res.count(beast::http::field::content_length) > 1 ||
                res[beast::http::field::content_length] != text) {
                res.set(beast::http::field::content_length, text);
            }
        }
        http::append_downstream_response(empty_head(c.info), res.base(), rec.version, keep_alive,
                                         rules_of(route.response_headers));
    } else {
        http::prepare_downstream_response(res.base(), false, rules_of(route.response_headers),
                                          &connection_named);
        // Chunked or close-delimited upstream: HTTP/1.1 clients get chunked; HTTP/1.0
        // clients get the body delimited by closing the connection.
        if (rec.version >= 11) {
            res.chunked(true);
        } else {
            res.chunked(false);
            keep_alive = false;
        }
        res.version(rec.version);
        res.keep_alive(keep_alive);
    }
    rec.status = res.result_int();
    // The backend connection serves another request only after a complete, clean exchange.
    const auto is_reusable = [&] {
        return response->keep_alive() && request_complete && up.buffer.size() == 0;
    };

    beast::http::serializer<false, buffer_body> response_writer{res};
    tcp_of(c.stream).expires_after(cfg.timeouts.idle);
    const auto length = response->content_length_remaining();
    if (length && !response->is_done() && *length <= up.buffer.size()) {
        // The whole body arrived with the head (the common small response): send head and
        // body in one gathered write instead of two.
        const auto [ec, written] = co_await write_prepared(
            c.stream, c.info.head,
            net::buffer(up.buffer.data().data(), static_cast<std::size_t>(*length)));
        up.buffer.consume(static_cast<std::size_t>(*length));
        rec.bytes = *length;
        write_access_log(c.info, rec);
        if (ec) {
            co_return false;
        }
        release = is_reusable();
        co_return keep_alive;
    }
    boost::system::error_code wec;
    if (framed_body) {
        std::tie(wec, std::ignore) = co_await write_prepared(c.stream, c.info.head);
    } else {
        // Chunked re-framing: the serializer that frames the chunks writes the head too.
        std::tie(wec, std::ignore) =
            co_await beast::http::async_write_header(c.stream, response_writer);
    }
    if (wec) {
        write_access_log(c.info, rec);
        co_return false;
    }
    if (response->is_done()) {
        // No body (HEAD, 204, 304, Content-Length: 0): the head was the whole message.
        write_access_log(c.info, rec);
        release = is_reusable();
        co_return keep_alive;
    }
    if (body_in_flight()) {
        beside->answer_read_bound = std::chrono::milliseconds(0);
    } else {
        tcp_of(io).expires_never();
    }
    bool read_failed = false;
    // Beside a body the steps change as it goes (they are read at each step, not copied).
    step_timeouts own_steps = response_steps(cfg, rec);
    const step_timeouts& steps = beside != nullptr ? beside->answer_steps : own_steps;
    auto rbec = co_await relay_body(io, up.buffer, *response, c.stream, response_writer, 0, steps,
                                    rec.bytes, read_failed, rules_of(route.response_headers),
                                    connection_named);
    if (!finish_response_body(c.info, rec, route, rbec, read_failed)) {
        co_return false;
    }
    release = is_reusable();
    co_return keep_alive;
}

/**
 * Writes a request head that is not sent at once by `exchange`: a chunked request's head
 * through its serializer (`chunked_writer`), which frames the chunks after it; the rest of
 * `left`, a head serialised for the backend already, when a plain socket did not take it
 * all or the backend is reached over TLS; or, for an upgrade, the head Beast holds. A
 * coroutine of its own, so that `exchange`'s frame does not carry these writes for the
 * requests that need none of them.
 */
template <typename Upstream>
task<boost::system::error_code>
write_request_head(Upstream& io, std::string& scratch, request_parser::value_type& req,
                   beast::http::serializer<true, buffer_body>* chunked_writer,
                   std::array<net::const_buffer, 2> left)
{
    boost::system::error_code ec;
    if (chunked_writer != nullptr) {
        std::tie(ec, std::ignore) = co_await beast::http::async_write_header(io, *chunked_writer);
    } else if (net::buffer_size(left) > 0) {
        std::tie(ec, std::ignore) = co_await net::async_write(io, left);
    } else {
        std::tie(ec, std::ignore) = co_await write_head(io, scratch, req.base());
    }
    co_return ec;
}

/**
 * Relays a backend's answer while the request body goes on in `job` (decision 0014), then
 * stops the body if the answer ended first and waits for it. Neither connection is kept:
 * a body that may not have been sent whole leaves no request boundary to go on from.
 */
template <typename Stream, typename Upstream>
task<bool> answer_beside_body(connection<Stream>& c, request_plan& plan, exchange_record& rec,
                              bool json, const request_traits& traits, upstream_connection& up,
                              Upstream& io, bool& retry, bool& release, body_job& job)
{
    const auto& cfg = c.state->cfg;
    // The answer's head waits as long as any (`timeouts.upstream`) once the body is sent.
    job.answer_read_bound = cfg.timeouts.upstream;
    const auto response_header_limit =
        static_cast<std::size_t>(std::max<std::uint64_t>(cfg.limits.header_bytes, 64 * 1024));
    c.info.body_in_flight = &job;
    co_await relay_parsed_response(c, plan, rec, json, traits, up, io,
                                   /*request_complete=*/false, response_header_limit, retry,
                                   release, &job);
    c.info.body_in_flight = nullptr;
    co_await stop_body(job);
    rec.body_unread = job.result.failed();
    release = false;
    retry = false; // the body is spent: the request cannot be sent again
    co_return false;
}

/**
 * Sends the prepared request to one backend connection and relays the response. Sets
 * `retry` when a pooled connection turned out closed before anything was sent (or, for a
 * replayable request, before anything came back), and
 * `release` when the connection may serve another request.
 */
template <typename Stream, typename Upstream>
task<bool> exchange(connection<Stream>& c, request_parser& parser, request_plan& plan,
                    exchange_record& rec, bool json, const request_traits& traits,
                    const http::forward_facts* direct, upstream_connection& up, Upstream& io,
                    bool& retry, bool& release)
{
    const auto& cfg = c.state->cfg;
    const auto& route = *plan.route;
    auto& req = parser.get();
    const bool client_keep_alive = traits.keep_alive;
    const bool upgrade = traits.upgrade;
    const bool expects_continue = traits.expects_continue;
    const bool has_body = !parser.is_done();
    // The parser's flag: framing_defect has made sure Transfer-Encoding is a lone chunked.
    const bool chunked = parser.chunked();

    // Write the head; a pooled connection the backend closed meanwhile gets one retry on a
    // fresh connection, which is safe because no whole head of this request reached it.
    // The serializer frames a chunked body (and writes its head); a request without a body
    // needs none.
    std::unique_ptr<beast::http::serializer<true, buffer_body>> request_writer;
    if (has_body || chunked) {
        request_writer = std::make_unique<beast::http::serializer<true, buffer_body>>(req);
    }
    tcp_of(io).expires_after(cfg.timeouts.idle);
    // One error code and one set of buffers serve every step, and the head write that must
    // be awaited is a coroutine of its own: a coroutine frame keeps each local and each
    // awaited operation in a place of its own, and this one is allocated for each request.
    boost::system::error_code ec;
    std::array<net::const_buffer, 2> out{};
    bool head_sent = false;
    if (!chunked && direct != nullptr) {
        http::append_upstream_request(empty_head(c.info), req.base(), *direct,
                                      rules_of(route.request_headers), expects_continue);
        out = prepared_buffers(c.info.head, {});
        if constexpr (is_plain_stream<Upstream>) {
            // Sent with the other requests of this turn of the worker's loop, in one system
            // call, so that a backend on this CPU wakes once for all of them (decision 0020).
            co_await c.w.sends().send(io, out, ec);
            head_sent = settled(out, ec);
        }
    }
    if (!head_sent) {
        ec = co_await write_request_head(io, c.info.head, req,
                                         chunked ? request_writer.get() : nullptr, out);
    }
    // Not for a send that was cancelled (a shutdown's deadline, a client that left: no new
    // connection is wanted) or whose fate is unknown (`send_batch` gave up its ring: the
    // head may have gone).
    if (ec && up.reused && ec != net::error::operation_aborted &&
        ec != boost::system::errc::io_error) {
        // The backend closed this pooled connection meanwhile; at most part of the head
        // reached it, nothing it could act on, so the caller retries on a fresh connection.
        retry = true;
        co_return false;
    }
    if (ec) {
        plan.detail = ec.message();
        co_await answer_error(c, plan, errc::upstream_protocol, json, rec);
        co_return false;
    }

    bool request_complete = !has_body && !upgrade;
    if (has_body || chunked) {
        std::unique_ptr<body_job> job;
        const auto sent =
            co_await send_request_body(c, parser, plan, rec, json, expects_continue && has_body,
                                       upgrade, io, up.buffer, *request_writer, job);
        if (sent == body_outcome::streaming) {
            co_return co_await answer_beside_body(c, plan, rec, json, traits, up, io, retry,
                                                  release, *job);
        }
        if (sent == body_outcome::answered) {
            co_return false;
        }
        request_complete = sent == body_outcome::complete;
        rec.body_unread = sent == body_outcome::cut_short;
    }
    if (request_complete && c.buffer.size() == 0 && c.buffer.capacity() > idle_read_size) {
        // A connection's first read buffer (or one a large head grew) would be given up once
        // the response is out; it goes now, so that a slow backend, a long poll or an event
        // stream does not keep it for the whole exchange.
        c.buffer.shrink_to_fit();
    }

    const auto response_header_limit =
        static_cast<std::size_t>(std::max<std::uint64_t>(cfg.limits.header_bytes, 64 * 1024));
    if (const auto after_cut = response_steps(cfg, rec).read; after_cut.count() > 0) {
        tcp_of(io).expires_after(after_cut);
    } else if (cfg.timeouts.upstream.count() > 0) {
        tcp_of(io).expires_after(cfg.timeouts.upstream);
    } else {
        tcp_of(io).expires_never();
    }
    if (!traits.head && !upgrade) {
        // The common response (a final status, a Content-Length body) is read in place and
        // its head written from the bytes received; any other goes to Beast's parser below,
        // which starts from the same buffered bytes.
        // The first read is awaited here: a head that comes whole in it (as good as every
        // one) then needs no coroutine frame for the loop that reads the rest.
        std::size_t head_length = 0;
        if (up.buffer.size() == 0) {
            std::size_t n = 0;
            std::tie(ec, n) = co_await io.async_read_some(
                up.buffer.prepare(upstream_connection::first_read_size));
            if (ec) {
                ec = head_read_failure(ec, false);
            } else {
                up.buffer.commit(n);
                head_length = complete_head_length(up.buffer);
            }
        }
        if (!ec && head_length == 0) {
            std::tie(ec, head_length) =
                co_await read_response_head(io, up.buffer, response_header_limit);
        }
        if (ec) {
            if (response_head_failed(ec, up, traits, plan, retry)) {
                co_await answer_error(c, plan, classify_upstream_failure(ec), json, rec);
            }
            co_return false;
        }
        if (head_length != 0 && restore_reason_separator(up.buffer)) {
            ++head_length;
        }
        auto& simple = c.w.response_head_scratch();
        if (head_length != 0 &&
            http::parse_simple_response(
                std::string_view(static_cast<const char*>(up.buffer.data().data()), head_length),
                simple)) {
            const auto length = simple.content_length;
            const bool backend_keeps = simple.keep_alive;
            const bool keep_alive = client_keep_alive && !c.w.is_draining() && request_complete;
            http::append_downstream_response(empty_head(c.info), simple, rec.version, keep_alive,
                                             rules_of(route.response_headers));
            up.buffer.consume(head_length);
            rec.status = simple.status;
            tcp_of(c.stream).expires_after(cfg.timeouts.idle);
            // When the whole body came with the head, both go in one write.
            const bool whole = length <= up.buffer.size();
            out = prepared_buffers(
                c.info.head, whole ? net::buffer(up.buffer.data().data(),
                                                 static_cast<std::size_t>(length))
                                   : net::const_buffer{});
            // A whole response the connection goes on after is sent with this turn's other
            // sends (decision 0020). The last one on a connection is sent at once, and the
            // connection closed in the same step, as nginx does: closed after an awaited
            // write, it would be closed after the client had read the response and closed
            // its end, and portico's CPU would complete the client's teardown too (its
            // TIME_WAIT). What the socket does not take at once is awaited.
            bool sent = false;
            if constexpr (is_plain_stream<Stream>) {
                if (whole && keep_alive) {
                    co_await c.w.sends().send(c.stream, out, ec);
                    sent = settled(out, ec);
                } else if (whole) {
                    // Held back (MSG_MORE) and pushed by the shutdown, so that the response
                    // and the FIN go in one segment (decision 0022): on loopback each segment
                    // costs both ends their share of the CPU. The shutdown, not the close,
                    // pushes it: a close with unread bytes from the client resets the
                    // connection and drops what was never sent.
                    send_available(c.stream, out, ec, MSG_MORE);
                    sent = settled(out, ec);
                    if (sent && !ec) {
                        boost::system::error_code ignored;
                        tcp_of(c.stream).shutdown(tcp::socket::shutdown_send, ignored);
                    }
                }
            }
            if (!sent) {
                std::tie(ec, std::ignore) = co_await net::async_write(c.stream, out);
            }
            if (whole) {
                up.buffer.consume(static_cast<std::size_t>(length));
                rec.bytes = length;
            }
            if (whole || ec) {
                write_access_log(c.info, rec);
                if (ec) {
                    co_return false;
                }
            } else {
                tcp_of(io).expires_never();
                bool read_failed = false;
                ec = co_await relay_length(io, up.buffer, c.stream, length,
                                           response_steps(cfg, rec), rec.bytes, read_failed);
                if (!finish_response_body(c.info, rec, route, ec, read_failed)) {
                    co_return false;
                }
            }
            release = backend_keeps && request_complete && up.buffer.size() == 0;
            co_return keep_alive;
        }
    }

    co_return co_await relay_parsed_response(c, plan, rec, json, traits, up, io,
                                             request_complete, response_header_limit, retry,
                                             release);
}

/**
 * Tells the admin side what connecting to a backend showed, between two probes: a refusal
 * at once, and a fresh connection to a backend last seen down. Pooled reuse says nothing
 * new and costs nothing here.
 */
void note_backend_state(worker& w, const config::backend& to, const acquire_result& acquired)
{
    if (!acquired.connection) {
        if (acquired.cancelled || w.is_past_shutdown_deadline()) {
            // Cut short for the client's or the shutdown's sake (a name's resolve included):
            // nothing learnt about the backend.
            return;
        }
        if (acquired.out_of_descriptors) {
            // Nothing was learnt about the backend; the operator should hear of it.
            PORTICO_LOG(log::level::warn, "out_of_descriptors", {"backend", to.text},
                        {"error", acquired.detail});
            return;
        }
        if (acquired.error == errc::upstream_refused ||
            acquired.error == errc::upstream_connect_timeout) {
            w.observatory().observe_backend(to.text, admin::backend_state::down);
        }
    } else if (!acquired.connection->reused) {
        if (w.observatory().backend(to.text) == admin::backend_state::down) {
            w.observatory().observe_backend(to.text, admin::backend_state::up);
        }
    }
}

/// Answers a request for which no backend connection could be had: the error page that says why.
template <typename Stream>
task<void> answer_unconnected(connection<Stream>& c, request_plan& plan,
                              const acquire_result& acquired, bool json, exchange_record& rec)
{
    plan.detail = acquired.detail;
    plan.name_unresolved = acquired.unresolved;
    plan.out_of_descriptors = acquired.out_of_descriptors;
    // Logged as "-" when no backend was reached (the page names it); one reached (a TLS
    // handshake that failed) by the address, as a backend that answered is.
    if (acquired.reached) {
        rec.backend = acquired.tried.empty() ? plan.route->to.text : acquired.tried.back();
    }
    plan.certificate_rejected = acquired.certificate_rejected;
    co_await answer_error(c, plan, acquired.error, json, rec, acquired.tried);
}

/**
 * Readies a routed request for its backend without suspending: checks the body limit and a
 * chunked body's start, and rewrites the head in place unless it will be written straight
 * from the parsed fields (`direct`, with `facts`). An error to answer, if any.
 */
template <typename Stream>
std::optional<errc> prepare_forward(connection<Stream>& c, request_parser& parser,
                                    const request_traits& traits, request_plan& plan,
                                    http::forward_facts& facts, bool& direct)
{
    const auto& cfg = c.state->cfg;
    const auto& route = *plan.route;
    auto& req = parser.get();
    if (cfg.limits.body_bytes != 0 && parser.content_length() &&
        *parser.content_length() > cfg.limits.body_bytes) {
        return errc::body_too_large;
    }

    const bool has_body = !parser.is_done();

    facts.client_ip = c.info.client_ip;
    facts.client_tls = c.info.tls;
    facts.original_host = plan.host;
    facts.upstream_host = plan.upstream_host;
    facts.target = plan.upstream_target;
    facts.upgrade = traits.upgrade;
    // A head the serializer does not have to frame (no chunked body, no upgrade) is written
    // from the parsed fields as it goes upstream, without rewriting them first.
    direct = !traits.upgrade && !parser.chunked() && !traits.restate_length &&
             !traits.drop_expect;
    if (!direct) {
        http::prepare_upstream_request(req.base(), facts, rules_of(route.request_headers),
                                       &plan.connection_named);
        if (traits.restate_length && parser.content_length()) {
            req.content_length(*parser.content_length()); // replaces every line with one
        }
        if (traits.expects_continue || traits.drop_expect) {
            // portico answers 100 Continue itself (below) and streams the body; the backend
            // then sees an ordinary request.
            req.erase(beast::http::field::expect);
        }
        if (parser.chunked()) {
            req.chunked(true);
        } else if (!has_body && req.count(beast::http::field::content_length) == 0) {
            req.chunked(false);
        }
    }

    if (parser.chunked() &&
        !http::is_chunked_prefix_valid(std::string_view(
            static_cast<const char*>(c.buffer.data().data()), c.buffer.size()))) {
        plan.detail = "malformed chunked body";
        return errc::bad_request;
    }
    return std::nullopt;
}

/// Answers a plain-HTTP request for a `redirect_https` route with 308 to the https URL.
template <typename Stream>
task<bool> redirect_to_https(connection<Stream>& c, const request_plan& plan,
                             exchange_record& rec, const request_parser& parser)
{
    // A body is not read (the client sends it again to the https URL): the connection ends
    // after the redirect, or its bytes would be read as the next request.
    const bool keep_alive = parser.keep_alive() && parser.is_done() && !c.w.is_draining();
    auto port = https_port_for(c.info, *c.w.state());
    if (port.empty()) {
        port = c.info.local_port; // no listener serves TLS (the configuration warned)
    }
    const auto location = https_url(port, plan.host, rec.target);
    auto res = http::make_redirect_response(location, rec.version, keep_alive);
    rec.status = res.result_int();
    rec.bytes = res.body().size();
    const auto ec = co_await send_response(c, res);
    write_access_log(c.info, rec);
    if (!ec && !keep_alive) {
        co_await lingering_close(c);
    }
    co_return !ec && keep_alive;
}

/**
 * Answers a request for the admin host: dashboard, API and metrics. Requests sent by a page
 * of another origin (a DNS-rebinding or cross-site attempt) get 403.
 */
template <typename Stream>
task<bool> serve_admin(connection<Stream>& c, request_parser& parser, request_plan& plan,
                       exchange_record& rec, bool json, const serving_state& state)
{
    auto& req = parser.get();
    rec.served_by = state.table.admin_host();
    if (!c.info.loopback_listener && !state.cfg.allow_external) {
        co_await answer_error(c, plan, errc::no_route, json, rec);
        co_return false;
    }
    // Every Origin line is judged (Referer when there is none): one that passes must not
    // vouch for another beside it.
    const auto judged = req.count(beast::http::field::origin) > 0 ? beast::http::field::origin
                                                                  : beast::http::field::referer;
    std::string_view claimed;
    std::string_view claimed_header;
    for (auto [line, last] = req.equal_range(judged); line != last; ++line) {
        if (!admin::is_allowed_origin(line->value(), state.table.admin_host(),
                                      state.listener_ports)) {
            claimed = line->value();
            claimed_header = judged == beast::http::field::origin ? "Origin" : "Referer";
            break;
        }
    }
    if (!claimed_header.empty()) {
        plan.detail = fmt::format("the admin pages answer only pages of portico itself; this "
                                  "request's {} is {}",
                                  claimed_header, claimed);
        co_await answer_error(c, plan, errc::forbidden_origin, json, rec);
        co_return false;
    }

    admin::page_request page;
    page.method = req.method_string();
    page.target = plan.upstream_target;
    page.scheme = c.info.tls ? "https" : "http";
    page.port = c.info.local_port;
    page.https_port = https_port_for(c.info, state);
    const admin::page_context context{state.cfg, state.table, c.w.observatory(),
                                      admin::build_version(), state.listen_addresses};
    auto answer = admin::respond(page, context);
    if (!answer.error_message.empty()) {
        // A page as every error gets: its format, X-Portico-Error, a lingering close.
        http::error_details d;
        d.error = answer.status == 404 ? errc::no_route : errc::bad_request;
        d.host = plan.host;
        d.message = answer.error_message;
        d.status = answer.status;
        co_await send_error_page(c, d, json, rec, answer.allow);
        co_return false;
    }

    // The admin API reads no bodies; one that was sent is not read, so the connection ends.
    const bool keep_alive = parser.keep_alive() && parser.is_done() && !c.w.is_draining();
    http::string_response res{static_cast<beast::http::status>(answer.status), rec.version};
    res.set(beast::http::field::server, "portico");
    res.set(beast::http::field::content_type, answer.content_type);
    res.set(beast::http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    res.set("Referrer-Policy", "same-origin");
    if (!answer.allow.empty()) {
        res.set(beast::http::field::allow, answer.allow);
    }
    rec.status = answer.status;
    if (req.method() == beast::http::verb::head) {
        res.content_length(answer.body.size());
    } else {
        rec.bytes = answer.body.size();
        res.body() = std::move(answer.body);
        res.prepare_payload();
    }
    res.keep_alive(keep_alive);
    const auto ec = co_await send_response(c, res);
    write_access_log(c.info, rec);
    if (ec) {
        co_return false;
    }
    if (!keep_alive) {
        co_await lingering_close(c);
        co_return false;
    }
    co_return true;
}

/// What `prepare_request` made of a request head, and what `serve_request` does next.
struct prepared_request {
    enum class next { answer_error, serve_admin, redirect_https, forward } what = next::forward;
    errc error = errc::bad_request; ///< for `answer_error`; the page's details are in the plan
    bool json = false;              ///< the client prefers a JSON error body
    request_traits traits;          ///< for forwarding
    bool direct = false;            ///< for forwarding: see `prepare_forward`
};

/**
 * Checks and parses the complete head of `head_length` bytes at the front of `c.buffer` into
 * `parser`, fills the access record, plans the request against the routes and readies one
 * to forward (`prepare_forward`, which fills `forwarding`). It does not
 * suspend, so what only this step needs stays out of `serve_request`'s coroutine frame: a
 * frame keeps every local and every awaited operation of its coroutine for the coroutine's
 * whole life, and one is allocated for each request (decision 0012).
 */
template <typename Stream>
prepared_request prepare_request(connection<Stream>& c, std::size_t head_length,
                                 const serving_state& state, request_parser& parser,
                                 request_plan& plan, exchange_record& rec,
                                 http::forward_facts& forwarding)
{
    prepared_request out;
    const auto fail = [&out](errc error, std::string detail, request_plan& p) {
        p.detail = std::move(detail);
        out.what = prepared_request::next::answer_error;
        out.error = error;
        return out;
    };
    const auto raw = std::string_view(static_cast<const char*>(c.buffer.data().data()),
                                      head_length);
    // Refused before parsing, a head still says what its client reads, and its request
    // line what the log names.
    const auto refuse_unparsed = [&](errc error, std::string detail) {
        out.json = http::prefers_json_in_raw_head(raw);
        note_request_line(rec, raw);
        return fail(error, std::move(detail), plan);
    };
    if (const auto defect = http::check_head_bytes(raw); defect != http::head_defect::none) {
        return refuse_unparsed(errc::bad_request, std::string(http::describe(defect)));
    }

    parser.eager(false);
    parser.body_limit(boost::none);
    parser.header_limit(static_cast<std::uint32_t>(state.cfg.limits.header_bytes));
    boost::system::error_code pec;
    put_guarded(parser, net::buffer(raw.data(), raw.size()), pec);
    if (pec == field_too_long) {
        return refuse_unparsed(errc::header_too_large,
                               "a header field is longer than 65,533 bytes, the most one field "
                               "may hold");
    }
    if (!pec && !parser.is_header_done()) {
        pec = beast::http::error::partial_message;
    }
    if (pec) {
        return refuse_unparsed(pec == beast::http::error::header_limit ? errc::header_too_large
                                                                        : errc::bad_request,
                               pec.message());
    }
    c.buffer.consume(head_length);

    auto& req = parser.get();
    rec.method = std::string(req.method_string());
    rec.target = std::string(req.target());
    rec.version = req.version() == 10 ? 10 : 11;
    rec.version_read = true;
    // Views into the head: read them before `prepare_forward`, which may rewrite it.
    const auto lines = http::scan_request_lines(req.base());
    rec.host = std::string(lines.host);
    out.json = lines.prefers_json;

    if (auto defect = framing_defect(parser, lines)) {
        return fail(errc::bad_request, std::move(*defect), plan);
    }
    if (req.method() == beast::http::verb::connect) {
        return fail(errc::bad_request, "CONNECT is not supported: portico is a reverse proxy",
                    plan);
    }
    if (c.info.tls_required) {
        plan.host = rec.host;
        return fail(errc::tls_required, {}, plan); // the page names the https URL
    }

    request_facts facts;
    facts.target = rec.target;
    facts.host = rec.host;
    facts.has_host = lines.hosts > 0;
    facts.version = rec.version;
    plan = plan_request(state, facts);
    // Whatever answers, a redirect or an error page included, is counted for its route.
    rec.route = plan.route;
    if (plan.error) {
        out.what = prepared_request::next::answer_error;
        out.error = *plan.error;
    } else if (plan.admin) {
        out.what = prepared_request::next::serve_admin;
    } else if (plan.route->redirect_https && !c.info.tls) {
        out.what = prepared_request::next::redirect_https;
    } else {
        out.traits = traits_of(parser, lines);
        if (const auto error = prepare_forward(c, parser, out.traits, plan, forwarding,
                                               out.direct)) {
            out.what = prepared_request::next::answer_error;
            out.error = *error;
        }
    }
    return out;
}

/**
 * The request head already complete in `c.buffer`, as `read_head` would find it without
 * reading: a new connection's first request (its first read is awaited before this), a
 * request on a plain connection in use read by the wait before it, or a pipelined one.
 * nullopt when a read is needed (over TLS, bytes wait inside the TLS stream, so those heads
 * are read by `read_head`).
 */
template <typename Stream>
std::optional<head_result> buffered_head(connection<Stream>& c)
{
    const auto limit = static_cast<std::size_t>(c.w.state()->cfg.limits.header_bytes);
    const auto data =
        std::string_view(static_cast<const char*>(c.buffer.data().data()), c.buffer.size());
    const auto end = data.starts_with("\r\n") || data.starts_with("\n")
                         ? 0
                         : http::find_head_end(data);
    if (end == 0) {
        return std::nullopt; // incomplete, or empty lines first: read_head deals with those
    }
    // As `read_head` does once a head has begun: the deadline was for the wait that is over,
    // and whatever is written to the client next sets its own.
    tcp_of(c.stream).expires_never();
    return complete_head(end, limit);
}

/// Reads, checks and serves one request; returns whether to read another.
template <typename Stream>
task<bool> serve_request(connection<Stream>& c, bool first_request)
{
    // Most heads are in the buffer already: no coroutine frame to look for them.
    auto head = buffered_head(c);
    if (!head) {
        head = co_await read_head(c, first_request);
    }
    if (head->what == head_result::kind::closed) {
        co_return false;
    }
    c.info.entry->idle = false;
    // The routes this request was planned with stay alive until it ends, whatever a reload
    // publishes meanwhile.
    const auto state = c.w.state();
    c.state = state.get();
    c.info.entry->client_gone = false; // said of the request that was waiting, if any
    exchange_record rec;
    request_plan plan;
    request_parser parser;
    http::forward_facts facts;
    prepared_request prepared;
    if (head->what == head_result::kind::failed) {
        rec.start = head->began.value_or(rec.start);
        prepared.what = prepared_request::next::answer_error;
        prepared.error = head->error;
        const std::string_view received(static_cast<const char*>(c.buffer.data().data()),
                                        c.buffer.size());
        prepared.json = http::prefers_json_in_raw_head(received);
        note_request_line(rec, received);
    } else {
        prepared = prepare_request(c, head->length, *state, parser, plan, rec, facts);
    }
    switch (prepared.what) {
    case prepared_request::next::answer_error:
        co_await answer_error(c, plan, prepared.error, prepared.json, rec);
        co_return false;
    case prepared_request::next::serve_admin:
        co_return co_await serve_admin(c, parser, plan, rec, prepared.json, *state) &&
            !c.w.is_draining();
    case prepared_request::next::redirect_https:
        co_return co_await redirect_to_https(c, plan, rec, parser);
    case prepared_request::next::forward:
        break;
    }

    // Forwarding happens here rather than in a coroutine of its own, whose frame would be
    // one more allocation for every request. A pooled connection is taken without a
    // coroutine: most requests find one.
    const auto& route = *plan.route;
    acquire_result acquired;
    acquired.connection = c.w.pool().take_idle(route.to, route.insecure_skip_verify);
    if (!acquired.connection) {
        // A client that leaves while the backend is connected to (or its TLS handshake
        // waits) is let go then, as one that leaves while its response is waited for.
        c.w.watch_for_abandoned();
        acquired = co_await c.w.pool().connect(route.to, route.insecure_skip_verify,
                                               &c.info.entry->upstream);
    }
    note_backend_state(c.w, route.to, acquired);
    if (!acquired.connection) {
        co_await answer_unconnected(c, plan, acquired, prepared.json, rec);
        co_return false;
    }
    struct upstream_guard {
        client_info& info;
        ~upstream_guard() { info.entry->upstream = nullptr; }
    } guard{c.info};
    const auto* direct = prepared.direct ? &facts : nullptr;
    for (int attempt = 0;; ++attempt) {
        auto& up = acquired.connection;
        rec.backend = up->address;
        c.info.entry->upstream = &up->stream;
        c.w.watch_for_abandoned();
        bool retry = false;
        bool release = false;
        bool again = false;
        if (up->tls) {
            again = co_await exchange(c, parser, plan, rec, prepared.json, prepared.traits,
                                      direct, *up, *up->tls, retry, release);
        } else {
            again = co_await exchange(c, parser, plan, rec, prepared.json, prepared.traits,
                                      direct, *up, up->stream, retry, release);
        }
        if (retry && c.info.entry->client_gone) {
            let_client_go(c, rec); // not retried for a client that left
            co_return false;
        }
        if (retry && attempt == 0) {
            // The connection named there goes when the new one (or the failure) is assigned.
            c.info.entry->upstream = nullptr;
            acquired = co_await c.w.pool().connect(route.to, route.insecure_skip_verify,
                                                   &c.info.entry->upstream);
            if (!acquired.connection) {
                co_await answer_unconnected(c, plan, acquired, prepared.json, rec);
                co_return false;
            }
            continue;
        }
        // While draining, the pool was emptied already; a connection put back now would
        // outlive the shutdown, its deadline timer keeping the worker's loop running.
        if (release && !c.w.is_draining()) {
            c.info.entry->upstream = nullptr;
            c.w.pool().release(route.to, std::move(up), route.insecure_skip_verify);
        }
        if (rec.body_unread && tcp_of(c.stream).is_open()) {
            // The rest of the body is still coming: closed now, the connection would be
            // reset, and the reset would drop whatever of the response the client has not
            // yet taken. The backend connection is not needed meanwhile.
            up.reset();
            c.info.entry->upstream = nullptr;
            co_await lingering_close(c);
        }
        co_return again && !c.w.is_draining();
    }
}


/**
 * Serves requests on one connection (plain or TLS), `served` of them already, until it should
 * close; or, for a plain connection that has just served its first request, until it should
 * wait for a second: then it returns true and the caller parks it (see `park`).
 */
template <typename Stream>
task<bool> serve_requests(connection<Stream> c, std::uint64_t served)
{
    for (;;) {
        const bool again = co_await serve_request(c, served == 0);
        ++served;
        if (!again || c.w.is_draining()) {
            if (c.buffer.size() > 0 && tcp_of(c.stream).is_open()) {
                // A further request is here already: closed with it unread, the connection
                // would be reset, and the reset could drop the end of the last response.
                co_await lingering_close(c);
            }
            co_return false;
        }
        // Between requests, however the last one ended: shutdown may close it at once.
        c.info.entry->idle = true;
        if (c.buffer.size() > 0) {
            continue; // the next request is here already (pipelined)
        }
        // A plain connection waits here, so that the frames of serve_request and read_head
        // are not held while it is idle. (Over TLS, bytes may already sit inside the TLS
        // stream, which a wait on the socket would not see: read_head waits there.) After its
        // first request a connection waits parked, holding no frame and no buffer: browsers
        // open connections they then leave idle. One that has come back for a second request
        // is in use: it keeps a small buffer and waits in a read, which costs no system call,
        // where a readiness wait costs Asio an epoll_ctl each time.
        constexpr bool plain = std::is_same_v<Stream, tcp_stream>;
        if (plain && served == 1) {
            std::string().swap(c.info.head);
            c.buffer.shrink_to_fit();
            co_return true;
        }
        // Drop what this request grew, so that a waiting connection holds at most
        // `idle_read_size`.
        if (c.info.head.capacity() > idle_read_size) {
            std::string().swap(c.info.head);
        }
        if (c.buffer.capacity() > idle_read_size) {
            c.buffer.shrink_to_fit();
        }
        if constexpr (plain) {
            tcp_of(c.stream).expires_after(c.w.state()->cfg.timeouts.idle);
            auto [ec, n] = co_await c.stream.async_read_some(c.buffer.prepare(idle_read_size));
            if (ec) {
                co_return false;
            }
            c.buffer.commit(n);
        }
    }
}

/// What the first bytes of a connection say it is.
enum class opening { plain, tls, incomplete, closed };

/// What the first bytes in `buffer` (at least one) say the connection is; `incomplete` for
/// a TLS ClientHello that has not all arrived.
opening classify_opening(const beast::flat_buffer& buffer, tls::hello_parser& parser,
                         tls::hello_result& hello)
{
    const auto* first = static_cast<const unsigned char*>(buffer.data().data());
    if (!tls::is_tls_record_start(first[0])) {
        return opening::plain;
    }
    hello = parser.parse(
        std::string_view(static_cast<const char*>(buffer.data().data()), buffer.size()));
    return hello.status == tls::hello_status::incomplete ? opening::incomplete : opening::tls;
}

/// The same for a first look, with a parser of its own (kept out of the caller's frame).
opening classify_opening(const beast::flat_buffer& buffer, tls::hello_result& hello)
{
    tls::hello_parser parser;
    return classify_opening(buffer, parser, hello);
}

enum class first_bytes { taken, none_yet, closed };

/**
 * Reads what a new connection's client has sent so far into `scratch` and keeps only those
 * bytes in `buffer`. A connection being opened then holds its request head, not a read
 * buffer sized for the largest head, while its request waits for a backend connection: a
 * burst of new connections would otherwise grow the heap by a buffer each, and the pages
 * stay resident after it between the objects that outlive it.
 */
first_bytes take_first_bytes(int socket, beast::flat_buffer& buffer, std::span<char> scratch)
{
    for (;;) {
        const auto n = ::recv(socket, scratch.data(), scratch.size(), 0);
        if (n > 0) {
            const auto count = static_cast<std::size_t>(n);
            std::memcpy(buffer.prepare(count).data(), scratch.data(), count);
            buffer.commit(count);
            return first_bytes::taken;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? first_bytes::none_yet
                                                                  : first_bytes::closed;
    }
}

/**
 * Reads on from what `buffer` holds until a TLS ClientHello is complete, so that passthrough
 * can route by SNI (or until the bytes turn out to be something else: plain HTTP). The
 * caller's deadline (`timeouts.header`) bounds it: a client that stops sending is closed.
 */
task<std::pair<opening, tls::hello_result>> read_opening(tcp_stream& tcp,
                                                         beast::flat_buffer& buffer)
{
    tls::hello_parser parser;
    tls::hello_result hello;
    for (;;) {
        if (buffer.size() > 0) {
            if (const auto kind = classify_opening(buffer, parser, hello);
                kind != opening::incomplete) {
                co_return std::pair{kind, hello};
            }
        }
        auto [ec, n] = co_await tcp.async_read_some(buffer.prepare(head_read_size));
        if (ec) {
            co_return std::pair{opening::closed, hello};
        }
        buffer.commit(n);
    }
}

/// Relays a TLS stream untouched to a passthrough route's backend.
task<void> pass_through(client_info& info, tcp_stream& tcp, beast::flat_buffer& buffer,
                        const config::route& route, std::chrono::steady_clock::duration write_timeout)
{
    auto acquired = co_await info.w.pool().connect(route.to);
    if (!acquired.connection) {
        PORTICO_LOG(log::level::warn, "passthrough_refused", {"conn", info.id},
                    {"route", route.host}, {"backend", route.to.text},
                    {"error", acquired.detail});
        co_return;
    }
    auto& up = *acquired.connection;
    info.entry->upstream = &up.stream;
    info.entry->tunnel = true;
    info.entry->idle = false; // a live tunnel gets the shutdown grace period, as WebSockets do
    tunnel_count counted(info.w.stats());
    const auto totals =
        co_await run_tunnel(tcp, buffer, up.stream, up.buffer, info.w, write_timeout);
    info.entry->upstream = nullptr;
    PORTICO_LOG(log::level::info, "passthrough_closed", {"conn", info.id}, {"client", info.client},
                {"route", route.host}, {"backend", up.address}, {"bytes_in", totals.a_to_b},
                {"bytes_out", totals.b_to_a});
}

/**
 * Serves a connection that opened with a TLS ClientHello: passthrough by SNI, or the
 * handshake and then HTTP over TLS. A coroutine of its own so that a plain connection's
 * frame does not carry the TLS stream.
 */
task<void> serve_tls(client_info& info, tcp_stream& tcp, beast::flat_buffer& buffer,
                     tls::hello_result hello)
{
    auto& w = info.w;
    if (!hello.server_name.empty()) {
        const auto state = w.state(); // the route outlives a reload while the tunnel is open
        if (const auto* route = state->table.match_passthrough(hello.server_name)) {
            co_await pass_through(info, tcp, buffer, *route, state->cfg.timeouts.idle);
            co_return;
        }
    }

    info.tls = true;
    // The handshake and the session use this manager even if a reload replaces it.
    const auto certificates = w.certificates();
    tls_server_stream<tcp_stream> tls_stream(tcp, certificates->server_context().native_handle(),
                                             buffer.data());
    buffer.consume(buffer.size());
    tcp.expires_after(w.state()->cfg.timeouts.header);
    auto [hec] = co_await tls_stream.async_handshake();
    if (hec) {
        PORTICO_LOG(log::level::debug, "tls_handshake_failed", {"conn", info.id},
                    {"client", info.client}, {"sni", hello.server_name}, {"error", hec.message()});
        co_return;
    }
    co_await serve_requests(connection<tls_server_stream<tcp_stream>>{info, tls_stream, buffer, w},
                            0);
    if (!tcp.is_open() || w.is_past_shutdown_deadline() || info.response_cut) {
        co_return;
    }
    // close_notify, bounded: a client that already left must not hold the coroutine. While
    // shutting down, ours is sent and the client's not waited for.
    tcp.expires_after(lingering_close_time);
    co_await tls_stream.async_shutdown(!w.is_draining());
}

/**
 * Hands a plain connection that has served its first request to the worker's parking lot,
 * where it waits for a second as a descriptor and 64 bytes (decision 0021). It is closed
 * instead while shutting down, or if the lot cannot take it (the kernel's limit of watched
 * descriptors, no memory for a slot): the client then opens a new connection for its next
 * request.
 */
void park(std::unique_ptr<client_connection> owned)
{
    auto& conn = *owned;
    auto& w = conn.info.w;
    if (w.is_draining()) {
        return;
    }
    parked_connection p;
    p.remote = conn.peer;
    p.id = conn.info.id;
    p.local_port = conn.local_port;
    p.loopback_listener = conn.info.loopback_listener;
    p.tls_required = conn.info.tls_required;
    p.listener_serves_tls = conn.info.listener_serves_tls;
    boost::system::error_code ec;
    p.fd = conn.tcp.release(ec);
    if (ec) {
        return;
    }
    w.parking().park(p, ec);
    if (ec) {
        ::close(p.fd);
        PORTICO_LOG(log::level::warn, "park_failed", {"conn", p.id}, {"error", ec.message()});
        return;
    }
    conn.parked = true;
}

} // namespace

task<void> serve_connection(worker& w, tcp_stream stream, tcp::endpoint remote,
                            tcp::endpoint local, std::uint64_t id, config::tls_mode mode)
{
    auto owned = std::make_unique<client_connection>(w, std::move(stream), remote, local, id);
    auto& conn = *owned;
    PORTICO_LOG(log::level::debug, "connection_open", {"conn", id}, {"client", conn.info.client});

    // The first bytes are taken here, bounded by the header timeout: a plain request (as
    // good as every connection) then needs no frame for the loop that reads a ClientHello,
    // and, being there already as a rule, no suspension either.
    conn.tcp.expires_after(w.state()->cfg.timeouts.header);
    for (;;) {
        const auto took =
            take_first_bytes(conn.tcp.descriptor(), conn.buffer, w.read_scratch());
        if (took == first_bytes::taken) {
            break;
        }
        if (took == first_bytes::closed) {
            co_return;
        }
        auto [ec] = co_await conn.tcp.async_wait_readable();
        if (ec) {
            co_return;
        }
    }
    std::pair<opening, tls::hello_result> opened;
    opened.first = classify_opening(conn.buffer, opened.second);
    if (opened.first == opening::incomplete) {
        opened = co_await read_opening(conn.tcp, conn.buffer);
    }
    if (opened.first == opening::closed) {
        co_return;
    }
    if (opened.first == opening::plain) {
        conn.info.tls_required = mode == config::tls_mode::only;
        conn.info.listener_serves_tls = mode != config::tls_mode::off;
        if (co_await serve_requests(connection<tcp_stream>{conn.info, conn.tcp, conn.buffer, w},
                                    0)) {
            park(std::move(owned));
        }
        co_return;
    }
    if (mode == config::tls_mode::off) {
        PORTICO_LOG(log::level::debug, "tls_on_plain_listener", {"conn", id});
        co_return;
    }
    if (opened.second.status == tls::hello_status::malformed) {
        PORTICO_LOG(log::level::warn, "malformed_client_hello", {"conn", id},
                    {"client", conn.info.client});
        co_return;
    }
    co_await serve_tls(conn.info, conn.tcp, conn.buffer, std::move(opened.second));
}

task<void> serve_unparked(worker& w, tcp_stream stream, parked_connection parked)
{
    auto owned = std::make_unique<client_connection>(w, std::move(stream), parked);
    auto& conn = *owned;
    // From its second request on, a connection waits in its coroutine (see `serve_requests`).
    co_await serve_requests(connection<tcp_stream>{conn.info, conn.tcp, conn.buffer, w}, 1);
}

} // namespace portico::proxy
