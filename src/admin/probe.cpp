#include "portico/admin/probe.hpp"

#include "core/name_resolver.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace portico::admin {
namespace {

using namespace net::experimental::awaitable_operators;

std::string read_text(const char* path)
{
    std::ifstream in(path);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

/// Splits a /proc/net/tcp line into whitespace-separated fields.
std::vector<std::string_view> fields_of(std::string_view line)
{
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && line[i] == ' ') {
            ++i;
        }
        const auto start = i;
        while (i < line.size() && line[i] != ' ') {
            ++i;
        }
        if (i > start) {
            out.push_back(line.substr(start, i - start));
        }
    }
    return out;
}

// /proc prints each 32-bit word of the address in host byte order; on the little-endian
// machines portico runs on, an IPv4 address's first octet is therefore the last two digits.
bool is_loopback_v4(std::string_view hex) { return hex.size() == 8 && hex.substr(6) == "7F"; }

bool is_loopback_v6(std::string_view hex)
{
    if (hex == "00000000000000000000000001000000") {
        return true; // ::1
    }
    // ::ffff:127.x.y.z
    return hex.size() == 32 && hex.substr(0, 24) == "0000000000000000FFFF0000" &&
           is_loopback_v4(hex.substr(24));
}

void collect(std::string_view text, bool v6, std::set<std::uint16_t>& out)
{
    std::size_t pos = 0;
    bool header = true;
    while (pos < text.size()) {
        auto end = text.find('\n', pos);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        const auto line = text.substr(pos, end - pos);
        pos = end + 1;
        if (header) {
            header = false; // "sl local_address rem_address st ..."
            continue;
        }
        const auto f = fields_of(line);
        if (f.size() < 4 || f[3] != "0A") { // 0A: LISTEN
            continue;
        }
        const auto colon = f[1].find(':');
        if (colon == std::string_view::npos) {
            continue;
        }
        const auto address = f[1].substr(0, colon);
        const auto port_hex = f[1].substr(colon + 1);
        unsigned port = 0;
        if (std::from_chars(port_hex.data(), port_hex.data() + port_hex.size(), port, 16).ec !=
            std::errc{}) {
            continue;
        }
        if (v6 ? !is_loopback_v6(address) : !is_loopback_v4(address)) {
            out.insert(static_cast<std::uint16_t>(port));
        }
    }
}

/// What a probe of one backend found.
enum class probe_outcome {
    listening,
    not_listening,
    /// No socket could be made (portico is out of descriptors): nothing is known.
    undecided,
};

/// Connects to one address or gives up at the timeout.
template <typename Protocol>
task<probe_outcome> try_connect(const typename Protocol::endpoint& ep,
                                std::chrono::milliseconds timeout)
{
    auto ex = co_await net::this_coro::executor;
    typename Protocol::socket::template rebind_executor<executor>::other socket(ex);
    steady_timer timer(ex);
    timer.expires_after(timeout);
    auto outcome = co_await (socket.async_connect(ep, as_task) || timer.async_wait(as_task));
    if (outcome.index() != 0) {
        co_return probe_outcome::not_listening;
    }
    const auto [ec] = std::get<0>(outcome);
    if (ec == net::error::no_descriptors ||
        ec == boost::system::error_code(ENFILE, boost::system::system_category())) {
        co_return probe_outcome::undecided;
    }
    co_return ec ? probe_outcome::not_listening : probe_outcome::listening;
}

task<probe_outcome> is_listening(const config::backend& b, std::chrono::milliseconds timeout,
                                 name_resolver& resolver)
{
    if (b.scheme == config::backend_scheme::unix_socket) {
        co_return co_await try_connect<unix_protocol>(
            unix_protocol::endpoint(b.socket_path.string()), timeout);
    }
    std::vector<net::ip::address> addresses;
    if (b.host == "localhost") {
        addresses = {net::ip::make_address("127.0.0.1"), net::ip::make_address("::1")};
    } else {
        boost::system::error_code ec;
        const auto a = net::ip::make_address(b.host, ec);
        if (!ec) {
            addresses.push_back(a);
        } else {
            // Bounded like a connect: a name server that does not answer must not stall
            // the round, nor hold up shutdown (see `name_resolver`).
            const auto r =
                co_await resolve_within(resolver, b.host, std::to_string(b.port), timeout);
            for (const auto& ep : r.found) {
                addresses.push_back(ep.address());
            }
        }
    }
    auto found = probe_outcome::not_listening;
    for (const auto& a : addresses) {
        const auto outcome = co_await try_connect<tcp>(tcp::endpoint(a, b.port), timeout);
        if (outcome == probe_outcome::listening) {
            co_return outcome;
        }
        if (outcome == probe_outcome::undecided) {
            found = outcome;
        }
    }
    co_return found;
}

} // namespace

std::set<std::uint16_t> exposed_ports(std::string_view proc_net_tcp, std::string_view proc_net_tcp6)
{
    std::set<std::uint16_t> out;
    collect(proc_net_tcp, false, out);
    collect(proc_net_tcp6, true, out);
    return out;
}

namespace {

constexpr unsigned tcp_listen_state = 10; // TCP_LISTEN in the kernel's tcp_states.h

bool is_loopback_address(int family, const std::uint32_t (&address)[4])
{
    // The address is in network byte order.
    const auto* bytes = reinterpret_cast<const unsigned char*>(address);
    if (family == AF_INET) {
        return bytes[0] == 127;
    }
    static constexpr std::array<unsigned char, 16> v6_loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                               0, 0, 0, 0, 0, 0, 0, 1};
    static constexpr std::array<unsigned char, 12> v4_mapped{0, 0, 0, 0, 0, 0, 0, 0,
                                                             0, 0, 0xff, 0xff};
    return std::memcmp(bytes, v6_loopback.data(), 16) == 0 ||
           (std::memcmp(bytes, v4_mapped.data(), 12) == 0 && bytes[12] == 127);
}

/// Appends the listeners of one address family; false when the kernel would not answer.
bool dump_listeners(int fd, int family, std::vector<tcp_listener>& out)
{
    static std::atomic<std::uint32_t> next_sequence{1};
    const auto sequence = next_sequence.fetch_add(1);
    struct {
        nlmsghdr header;
        inet_diag_req_v2 request;
    } message{};
    message.header.nlmsg_len = sizeof(message);
    message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    message.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    message.header.nlmsg_seq = sequence;
    message.request.sdiag_family = static_cast<std::uint8_t>(family);
    message.request.sdiag_protocol = IPPROTO_TCP;
    message.request.idiag_states = 1U << tcp_listen_state;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd, &message, sizeof(message), 0, reinterpret_cast<sockaddr*>(&kernel),
                 sizeof(kernel)) < 0) {
        return false;
    }
    alignas(nlmsghdr) std::array<char, 16 * 1024> buffer;
    // A dump ends with NLMSG_DONE; the socket's receive timeout bounds each read, and the
    // number of reads is bounded too, in case the kernel kept sending.
    // Anything odd (a datagram larger than the buffer, one not from the kernel, a dump the
    // kernel says was interrupted by a change) makes the caller fall back to /proc.
    for (int reads = 0; reads < 4096; ++reads) {
        sockaddr_nl from{};
        socklen_t from_length = sizeof(from);
        const auto n = ::recvfrom(fd, buffer.data(), buffer.size(), MSG_TRUNC,
                                  reinterpret_cast<sockaddr*>(&from), &from_length);
        if (n <= 0 || static_cast<std::size_t>(n) > buffer.size() || from.nl_pid != 0) {
            return false;
        }
        auto remaining = static_cast<int>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buffer.data()); NLMSG_OK(h, remaining);
             h = NLMSG_NEXT(h, remaining)) {
            if (h->nlmsg_seq != sequence || (h->nlmsg_flags & NLM_F_DUMP_INTR) != 0) {
                return false;
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                return true;
            }
            if (h->nlmsg_type == NLMSG_ERROR ||
                h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
                return false;
            }
            const auto* socket = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
            out.push_back(tcp_listener{ntohs(socket->id.idiag_sport),
                                       is_loopback_address(family, socket->id.idiag_src)});
        }
    }
    return false;
}

} // namespace

std::optional<std::vector<tcp_listener>> read_tcp_listeners()
{
    const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) {
        return std::nullopt;
    }
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } guard{fd};
    timeval limit{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    std::vector<tcp_listener> out;
    if (!dump_listeners(fd, AF_INET, out) || !dump_listeners(fd, AF_INET6, out)) {
        return std::nullopt;
    }
    return out;
}

std::set<std::uint16_t> read_exposed_ports()
{
    // /proc/net/tcp lists every socket, established and TIME_WAIT ones included: on a busy
    // machine that is megabytes of text every probe, where netlink returns the listeners.
    if (const auto listeners = read_tcp_listeners()) {
        std::set<std::uint16_t> out;
        for (const auto& l : *listeners) {
            if (!l.loopback) {
                out.insert(l.port);
            }
        }
        return out;
    }
    return exposed_ports(read_text("/proc/net/tcp"), read_text("/proc/net/tcp6"));
}

std::vector<config::backend> backends_of(const std::vector<config::route>& routes)
{
    std::vector<config::backend> out;
    std::set<std::string> seen;
    for (const auto& r : routes) {
        if (seen.insert(r.to.text).second) {
            out.push_back(r.to);
        }
    }
    return out;
}

namespace {

task<std::map<std::string, backend_state>>
probe_backends_with(std::vector<config::backend> backends, std::chrono::milliseconds timeout,
                    std::shared_ptr<name_resolver> resolver)
{
    // One coroutine per backend, all in flight at once, so a slow one costs one timeout.
    auto ex = co_await net::this_coro::executor;
    struct shared {
        std::map<std::string, probe_outcome> listening;
        std::size_t pending = 0;
        steady_timer done;
        std::shared_ptr<name_resolver> resolver;
        shared(executor e, std::shared_ptr<name_resolver> r) : done(e), resolver(std::move(r)) {}
    };
    auto state = std::make_shared<shared>(executor(ex), std::move(resolver));
    state->pending = backends.size();
    state->done.expires_at(steady_timer::time_point::max());
    for (const auto& b : backends) {
        net::co_spawn(
            ex,
            [b, timeout, state]() -> task<void> {
                state->listening[b.text] = co_await is_listening(b, timeout, *state->resolver);
                if (--state->pending == 0) {
                    state->done.cancel();
                }
            },
            net::detached);
    }
    if (state->pending > 0) {
        co_await state->done.async_wait();
    }

    const auto exposed = read_exposed_ports();
    std::map<std::string, backend_state> out;
    for (const auto& b : backends) {
        const auto found = state->listening[b.text];
        if (found == probe_outcome::undecided) {
            continue; // left out: what was known of it stays
        }
        if (found == probe_outcome::not_listening) {
            out[b.text] = backend_state::down;
        } else if (b.scheme != config::backend_scheme::unix_socket && exposed.contains(b.port)) {
            out[b.text] = backend_state::exposed;
        } else {
            out[b.text] = backend_state::up;
        }
    }
    co_return out;
}

} // namespace

task<std::map<std::string, backend_state>>
probe_backends(std::vector<config::backend> backends, std::chrono::milliseconds timeout)
{
    auto ex = co_await net::this_coro::executor;
    co_return co_await probe_backends_with(std::move(backends), timeout,
                                           std::make_shared<name_resolver>(deliver_by_post(ex)));
}

std::map<std::string, backend_state> probe_backends_now(std::vector<config::backend> backends,
                                                        std::chrono::milliseconds timeout)
{
    net::io_context io(1);
    auto result = net::co_spawn(io, probe_backends(std::move(backends), timeout), net::use_future);
    io.run();
    return result.get();
}

backend_monitor::backend_monitor(executor ex, observatory& obs, backend_source source,
                                 std::chrono::milliseconds interval,
                                 std::chrono::milliseconds timeout)
    : executor_(ex), observatory_(obs), source_(std::move(source)), interval_(interval),
      timeout_(timeout), timer_(ex), resolver_(std::make_shared<name_resolver>(deliver_by_post(ex)))
{
}

backend_monitor::~backend_monitor() = default;

void backend_monitor::start() { net::co_spawn(executor_, loop(), net::detached); }

void backend_monitor::poke()
{
    poked_ = true;
    timer_.cancel();
}

void backend_monitor::stop()
{
    stopped_ = true;
    timer_.cancel();
}

task<void> backend_monitor::loop()
{
    while (!stopped_) {
        poked_ = false;
        // One resolver for every round: a round finds a name still stuck from the last
        // one being resolved, and waits for that rather than starting it again.
        const auto states = co_await probe_backends_with(source_(), timeout_, resolver_);
        if (stopped_) {
            break;
        }
        for (const auto& [to, state] : states) {
            observatory_.observe_backend(to, state);
        }
        if (poked_) {
            continue; // the cancel found no wait: the round may predate the reload
        }
        timer_.expires_after(interval_);
        co_await timer_.async_wait();
    }
}

} // namespace portico::admin
