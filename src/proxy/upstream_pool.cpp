#include "proxy/upstream_pool.hpp"

#include "core/name_resolver.hpp"
#include "portico/tls/client.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <tuple>

namespace portico::proxy {
namespace {

// Idle connections kept per backend and worker: more than the concurrent requests a
// browser keeps in flight (six per host over HTTP/1.1), so that a busy backend is not
// reconnected to on every request. Each idle one costs a socket, its reactor and deadline
// state and a 1 KiB buffer (about 1.6 KB), and a burst leaves its peak of them behind:
// 256 left 105-154 open after the bench's 1,000-connection burst, 0.25 KiB per client
// connection. nginx's `keepalive 64` in the bench holds the same number.
constexpr std::size_t max_idle_per_backend = 64;


// A pooled connection is worth reusing only if the backend has not closed it meanwhile:
// a non-blocking peek returns 0 on EOF, data if the backend sent something unasked (also a
// reason to drop it), and EAGAIN when the connection is quietly open. Over TLS, bytes that
// came in the same read as the last response are no longer on the socket but in OpenSSL's
// input (the engine's BIO, or a record read and not yet returned): an unasked response, a
// close_notify. Any of them is as much a reason to drop it.
bool is_still_open(upstream_connection& c)
{
    if (c.tls) [[unlikely]] {
        SSL* ssl = c.tls->native_handle();
        if (SSL_has_pending(ssl) == 1 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0) {
            return false;
        }
    }
    char probe = 0;
    const auto n = ::recv(c.stream.socket().native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/// Shows a stream being connected through `slot` for as long as it lives.
class shown_in_flight {
public:
    shown_in_flight(upstream_stream** slot, upstream_stream& s) : slot_(slot)
    {
        if (slot_ != nullptr) {
            *slot_ = &s;
        }
    }
    ~shown_in_flight()
    {
        if (slot_ != nullptr) {
            *slot_ = nullptr;
        }
    }
    shown_in_flight(const shown_in_flight&) = delete;
    shown_in_flight& operator=(const shown_in_flight&) = delete;

private:
    upstream_stream** slot_;
};

errc classify_connect_error(const boost::system::error_code& ec)
{
    if (ec == beast::error::timeout) {
        return errc::upstream_connect_timeout;
    }
    return errc::upstream_refused;
}

/// How long a unix-socket backend whose accept queue is full is left before trying again.
constexpr auto unix_busy_retry = std::chrono::milliseconds(20);

/// The process (EMFILE) or the system (ENFILE) has no file descriptor left for a socket.
bool is_out_of_descriptors(const boost::system::error_code& ec)
{
    return ec == net::error::no_descriptors ||
           ec == boost::system::error_code(ENFILE, boost::system::system_category());
}

/// Writes `value` in decimal at `out`; returns the end.
char* write_decimal(char* out, unsigned value)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (n > 0) {
        *out++ = digits[--n];
    }
    return out;
}

/// Writes a dotted IPv4 address at `out` (15 bytes at most); returns the end.
char* write_ipv4(char* out, const net::ip::address_v4& a)
{
    const auto bytes = a.to_bytes();
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i > 0) {
            *out++ = '.';
        }
        out = write_decimal(out, bytes[i]);
    }
    return out;
}

} // namespace

// Every client connection formats its peer's address twice (with and without the port);
// inet_ntop goes through sprintf, which for IPv4 costs more than the four numbers are worth.
std::string address_text(const net::ip::address& a)
{
    if (!a.is_v4()) {
        return a.to_string();
    }
    char text[16];
    return std::string(text, write_ipv4(text, a.to_v4()));
}

std::string endpoint_text(const tcp::endpoint& ep)
{
    if (ep.address().is_v6()) {
        std::string out = "[";
        out += ep.address().to_string();
        out += "]:";
        out += std::to_string(ep.port());
        return out;
    }
    char text[24];
    char* end = write_ipv4(text, ep.address().to_v4());
    *end++ = ':';
    end = write_decimal(end, ep.port());
    return std::string(text, end);
}

upstream_pool::upstream_pool(executor ex, mailbox& inbox, const config::timeouts& timeouts)
    : executor_(ex), inbox_(inbox), timeouts_(timeouts), sweep_timer_(ex)
{
}

upstream_pool::~upstream_pool() = default;

const std::string& upstream_pool::key_of(const config::backend& b, bool skip_verify)
{
    // Reuse one string so that a lookup does not allocate once the key has been seen.
    key_scratch_.clear();
    if (b.scheme == config::backend_scheme::unix_socket) {
        key_scratch_ += "unix:";
        key_scratch_ += b.socket_path.native();
    } else {
        key_scratch_ += b.scheme == config::backend_scheme::https ? "https://" : "http://";
        key_scratch_ += b.host;
        key_scratch_ += ':';
        key_scratch_ += std::to_string(b.port);
        if (skip_verify) {
            key_scratch_ += "#unverified";
        }
    }
    return key_scratch_;
}

std::unique_ptr<upstream_connection> upstream_pool::take_idle(const config::backend& b,
                                                              bool skip_verify)
{
    auto& list = idle_list(b, skip_verify);
    if (list.empty()) {
        return nullptr;
    }
    const auto now = std::chrono::steady_clock::now();
    while (!list.empty()) {
        auto c = std::move(list.back());
        list.pop_back();
        // The peek costs a system call per request, and it is kept: besides a closed
        // connection it catches bytes the backend sent unasked after a response (a body for a
        // HEAD, more than Content-Length), which the next request would otherwise read as the
        // start of its own response.
        if (now - c->idle_since < timeouts_.idle && is_still_open(*c)) {
            c->reused = true;
            return c;
        }
    }
    return nullptr;
}

task<acquire_result> upstream_pool::connect(const config::backend& b, bool skip_verify,
                                            upstream_stream** in_flight)
{
    auto r = co_await connect_socket(b, in_flight);
    if (r.connection && b.scheme == config::backend_scheme::https) {
        co_await start_tls(r, b, skip_verify, in_flight);
    }
    co_return r;
}

task<void> upstream_pool::start_tls(acquire_result& r, const config::backend& b, bool skip_verify,
                                    upstream_stream** in_flight)
{
    auto& c = *r.connection;
    c.tls = std::make_unique<ssl::stream<upstream_stream&>>(
        c.stream, certificates_->client_context(!skip_verify));
    tls::prepare_client(c.tls->native_handle(), b.host, !skip_verify);
    c.stream.expires_after(timeouts_.connect);
    boost::system::error_code ec;
    {
        const shown_in_flight shown(in_flight, c.stream);
        std::tie(ec) = co_await c.tls->async_handshake(ssl::stream_base::client);
    }
    c.stream.expires_never();
    if (!ec) {
        co_return;
    }
    if (ec == net::error::operation_aborted) {
        r.cancelled = true;
        r.connection.reset();
        co_return;
    }
    r.error = ec == beast::error::timeout ? errc::upstream_connect_timeout : errc::upstream_tls;
    r.reached = true;
    r.detail = tls::verify_failure(c.tls->native_handle());
    r.certificate_rejected = !r.detail.empty();
    if (r.detail.empty()) {
        r.detail = ec.message();
    }
    r.connection.reset();
}

task<acquire_result> upstream_pool::connect_socket(const config::backend& b,
                                                   upstream_stream** in_flight)
{
    if (b.scheme != config::backend_scheme::unix_socket) {
        auto r = co_await connect_tcp(b, in_flight);
        co_return r;
    }
    acquire_result result;
    result.tried.push_back("unix:" + b.socket_path.string());
    const upstream_protocol::endpoint ep{net::local::stream_protocol::endpoint(b.socket_path.native())};
    const auto deadline = std::chrono::steady_clock::now() + timeouts_.connect;
    for (;;) {
        auto c = std::make_unique<upstream_connection>(executor_);
        c->address = result.tried.back();
        c->stream.expires_at(deadline);
        const shown_in_flight shown(in_flight, c->stream);
        auto [ec] = co_await c->stream.async_connect(ep);
        if (ec == net::error::operation_aborted) {
            result.cancelled = true; // no other address is tried
            co_return result;
        }
        if (ec) {
            result.error = classify_connect_error(ec);
            result.detail = ec.message();
            result.out_of_descriptors = is_out_of_descriptors(ec);
            co_return result;
        }
        // A unix socket whose queue of connections to accept is full refuses a non-blocking
        // connect with EAGAIN, which Asio takes for one in progress and then reports done:
        // the socket is not connected. As a TCP backend's full queue makes a connect wait, a
        // busy backend is tried again until timeouts.connect.
        sockaddr_storage peer{};
        socklen_t length = sizeof peer;
        if (::getpeername(c->stream.socket().native_handle(),
                          reinterpret_cast<sockaddr*>(&peer), &length) == 0 ||
            errno != ENOTCONN) {
            c->stream.expires_never();
            result.connection = std::move(c);
            co_return result;
        }
        if (std::chrono::steady_clock::now() + unix_busy_retry >= deadline) {
            result.error = errc::upstream_connect_timeout;
            result.detail = "its queue of connections waiting to be accepted stayed full";
            co_return result;
        }
        steady_timer pause(executor_);
        pause.expires_after(unix_busy_retry);
        co_await pause.async_wait();
    }
}

task<acquire_result> upstream_pool::connect_tcp(const config::backend& b,
                                                upstream_stream** in_flight)
{
    acquire_result result;
    std::vector<tcp::endpoint> candidates;
    const bool is_localhost = b.host == "localhost";
    if (is_localhost) {
        // Dev servers bind 127.0.0.1 or ::1 depending on their runtime; try both and start
        // with the one that answered last time.
        const bool v6_first = localhost_prefers_v6_[key_of(b)];
        candidates.emplace_back(net::ip::make_address_v4("127.0.0.1"), b.port);
        candidates.emplace_back(net::ip::make_address_v6("::1"), b.port);
        if (v6_first) {
            std::swap(candidates[0], candidates[1]);
        }
    } else {
        boost::system::error_code parse_ec;
        const auto address = net::ip::make_address(b.host, parse_ec);
        if (!parse_ec) {
            candidates.emplace_back(address, b.port);
        } else {
            // A remote backend by name (allowed by allow_remote_backends).
            if (!resolver_) {
                resolver_ = std::make_unique<name_resolver>(
                    [&inbox = inbox_](std::function<void()> f) { return inbox.post(std::move(f)); });
            }
            // A name gets `timeouts.connect`, as a connection does, and each address found
            // its own after it.
            auto r = co_await resolve_within(*resolver_, b.host, std::to_string(b.port),
                                             timeouts_.connect);
            if (r.error) {
                result.tried.push_back(fmt::format("{}:{}", b.host, b.port));
                if (r.timed_out) {
                    result.error = errc::upstream_connect_timeout;
                    result.detail =
                        fmt::format("no address for {} from the name resolver", b.host);
                } else {
                    // The system resolver's answer, not a failure to ask it (no thread).
                    result.unresolved =
                        r.error.category() == net::error::get_netdb_category() ||
                        r.error.category() == net::error::get_addrinfo_category();
                    result.detail = r.error.message();
                }
                co_return result;
            }
            candidates = std::move(r.found);
        }
    }

    for (const auto& ep : candidates) {
        result.tried.push_back(endpoint_text(ep));
        auto c = std::make_unique<upstream_connection>(executor_);
        c->address = result.tried.back();
        c->stream.expires_after(timeouts_.connect);
        const shown_in_flight shown(in_flight, c->stream);
        auto [ec] = co_await c->stream.async_connect(upstream_protocol::endpoint(ep));
        if (ec == net::error::operation_aborted) {
            result.cancelled = true; // no other address is tried
            co_return result;
        }
        if (ec) {
            result.error = classify_connect_error(ec);
            result.detail = ec.message();
            result.out_of_descriptors = is_out_of_descriptors(ec);
            if (result.error == errc::upstream_connect_timeout || result.out_of_descriptors) {
                co_return result;
            }
            continue;
        }
        c->stream.expires_never();
        boost::system::error_code opt_ec;
        c->stream.socket().set_option(tcp::no_delay(true), opt_ec);
        if (is_localhost) {
            localhost_prefers_v6_[key_of(b)] = ep.address().is_v6();
        }
        result.connection = std::move(c);
        co_return result;
    }
    co_return result;
}

void upstream_pool::release(const config::backend& b, std::unique_ptr<upstream_connection> c,
                            bool skip_verify)
{
    auto& list = idle_list(b, skip_verify);
    if (list.size() >= max_idle_per_backend) {
        return;
    }
    c->buffer.clear();
    if (c->buffer.capacity() > upstream_connection::first_read_size) {
        // A large response head grew it; an idle connection keeps only the first read's size.
        c->buffer.shrink_to_fit();
    }
    c->idle_since = std::chrono::steady_clock::now();
    list.push_back(std::move(c));
    schedule_sweep();
}

void upstream_pool::schedule_sweep()
{
    if (sweep_armed_) {
        return;
    }
    sweep_armed_ = true;
    sweep_timer_.expires_after(std::min<std::chrono::steady_clock::duration>(sweep_interval,
                                                                             timeouts_.idle));
    sweep_timer_.async_wait([this, generation = sweep_generation_](
                                 const boost::system::error_code& ec) {
        if (generation != sweep_generation_) {
            return; // cancelled by `clear`, which disarmed it; a later release re-armed it
        }
        sweep_armed_ = false;
        if (!ec) {
            sweep();
        }
    });
}

void upstream_pool::sweep()
{
    const auto now = std::chrono::steady_clock::now();
    bool any_left = false;
    for (auto& [key, list] : idle_) {
        std::erase_if(list, [&](const std::unique_ptr<upstream_connection>& c) {
            return now - c->idle_since >= timeouts_.idle || !is_still_open(*c);
        });
        any_left = any_left || !list.empty();
    }
    if (any_left) {
        schedule_sweep();
    }
}

std::vector<std::unique_ptr<upstream_connection>>&
upstream_pool::idle_list(const config::backend& b, bool skip_verify)
{
    // Consecutive requests mostly go to one backend: comparing its fields with the last
    // lookup's is cheaper than building and hashing the key twice per request. Elements of
    // an unordered_map stay where they are when it grows.
    auto& last = last_lookup_;
    if (last.list != nullptr && last.scheme == b.scheme && last.port == b.port &&
        last.skip_verify == skip_verify && last.host == b.host &&
        last.socket_path == b.socket_path) {
        return *last.list;
    }
    auto& list = idle_[key_of(b, skip_verify)];
    last.scheme = b.scheme;
    last.port = b.port;
    last.skip_verify = skip_verify;
    last.host = b.host;
    last.socket_path = b.socket_path;
    last.list = &list;
    return list;
}

void upstream_pool::clear()
{
    last_lookup_.list = nullptr;
    idle_.clear();
    sweep_timer_.cancel(); // a pending wait would keep a draining worker's loop running
    sweep_armed_ = false;
    ++sweep_generation_;
}

void upstream_pool::cancel_resolves()
{
    if (resolver_) {
        resolver_->cancel_all();
    }
}

} // namespace portico::proxy
