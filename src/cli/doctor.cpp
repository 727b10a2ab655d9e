#include "cli/doctor.hpp"

#include "cli/config_source.hpp"
#include "cli/hosts.hpp"
#include "core/name_resolver.hpp"
#include "portico/admin/probe.hpp"
#include "portico/cli/app.hpp"
#include "portico/core/net.hpp"
#include "portico/tls/certificates.hpp"
#include "proxy/send_batch.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <fmt/format.h>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <functional>
#include <fstream>
#include <sstream>

namespace portico::cli {
namespace {

enum class verdict { ok, warn, fail };

/// Collects findings and prints each as it is made.
struct report {
    bool failed = false;

    void operator()(verdict v, const std::string& text)
    {
        const std::string_view tag = v == verdict::ok ? "ok  " : v == verdict::warn ? "warn" : "fail";
        failed = failed || v == verdict::fail;
        fmt::print("{}  {}\n", tag, text);
    }
};

std::string read_text(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

/**
 * True when a portico answers on `ep` within a second: its health check names itself
 * (`Server: portico` and a `version`), or the request gets one of its error pages, which
 * carry `X-Portico-Error` (a `tls: only` listener refuses plain HTTP so). A dev server's
 * own `{"status":"ok"}` is not taken for one.
 */
bool portico_answers(const tcp::endpoint& ep, const std::string& admin_host)
{
    net::io_context io(1);
    tcp::socket socket(io);
    std::string answer;
    std::array<char, 4096> chunk{};
    const std::string request = fmt::format("GET /api/health HTTP/1.1\r\nHost: {}\r\n"
                                            "Accept: application/json\r\n"
                                            "Connection: close\r\n\r\n",
                                            admin_host);
    std::function<void(boost::system::error_code, std::size_t)> on_read =
        [&](boost::system::error_code ec, std::size_t n) {
            answer.append(chunk.data(), n);
            if (!ec && answer.size() < 64 * 1024) {
                socket.async_read_some(net::buffer(chunk), on_read);
            }
        };
    socket.async_connect(ep, [&](boost::system::error_code ec) {
        if (ec) {
            return;
        }
        net::async_write(socket, net::buffer(request), [&](boost::system::error_code wec, std::size_t) {
            if (!wec) {
                socket.async_read_some(net::buffer(chunk), on_read);
            }
        });
    });
    // Whatever holds the port may accept and never answer: the wait is bounded.
    io.run_for(std::chrono::seconds(1));

    beast::http::response_parser<beast::http::string_body> parser;
    parser.eager(true);
    boost::system::error_code ec;
    parser.put(net::buffer(answer), ec);
    if (!parser.is_header_done()) {
        return false;
    }
    const auto& res = parser.get();
    if (res.find("X-Portico-Error") != res.end()) {
        return true;
    }
    return res.result() == beast::http::status::ok &&
           beast::iequals(res[beast::http::field::server], "portico") &&
           answer.find("\"status\":\"ok\"") != std::string::npos &&
           answer.find("\"version\":") != std::string::npos;
}

void check_listeners(const config::config& cfg, report& say)
{
    for (const auto& l : cfg.listen) {
        std::vector<std::string> hosts{l.host};
        if (l.host == "localhost") {
            hosts = {"127.0.0.1", "::1"};
        }
        for (const auto& host : hosts) {
            const tcp::endpoint ep(net::ip::make_address(host), l.port);
            const auto where = l.host == "localhost" ? fmt::format("{} ({})", l.to_string(), host)
                                                     : l.to_string();
            if (!ep.address().is_loopback()) {
                say(verdict::warn, fmt::format("{} is reachable from the network "
                                               "(allow_external: true)",
                                               where));
            }
            if (l.port == 0) {
                say(verdict::ok, fmt::format("{}: the system picks a free port", where));
                continue;
            }
            net::io_context io(1);
            tcp::acceptor probe(io);
            boost::system::error_code ec;
            probe.open(ep.protocol(), ec);
            if (!ec) {
                probe.set_option(net::socket_base::reuse_address(true), ec);
            }
            if (!ec) {
                probe.bind(ep, ec);
            }
            if (!ec) {
                say(verdict::ok, fmt::format("{} is free", where));
            } else if (ec == net::error::address_in_use) {
                if (portico_answers(ep, cfg.admin)) {
                    say(verdict::ok, fmt::format("{}: portico is running there", where));
                } else {
                    say(verdict::fail,
                        fmt::format("{} is used by another program: stop it (see `ss -ltnp "
                                    "'sport = :{}'`) or change 'listen'",
                                    where, l.port));
                }
            } else if (ec == net::error::access_denied) {
                say(verdict::fail,
                    fmt::format("{}: ports below 1024 need root or CAP_NET_BIND_SERVICE (e.g. "
                                "`sudo setcap cap_net_bind_service=+ep $(command -v portico)`), "
                                "or choose a port above 1023",
                                where));
            } else {
                say(verdict::fail, fmt::format("{}: {}", where, ec.message()));
            }
        }
    }
    if (::geteuid() == 0) {
        say(verdict::warn, "running as root: portico needs no privileges unless a listen port "
                           "is below 1024");
    }
}

void check_ca(const config::config& cfg, report& say)
{
    const auto ca_pem = cfg.tls.ca_dir / "ca.pem";
    std::error_code ec;
    if (!std::filesystem::exists(ca_pem, ec)) {
        say(verdict::warn, fmt::format("no local CA yet in {}: `portico ca install` creates it "
                                       "and adds it to the trust stores",
                                       cfg.tls.ca_dir.string()));
        return;
    }
    std::string error;
    const auto ca = tls::certificate_authority::open(cfg.tls.ca_dir, cfg.tls.ca_permitted_names,
                                                     error);
    if (!ca) {
        say(verdict::fail, error);
        return;
    }
    say(verdict::ok, fmt::format("local CA {}", ca->certificate_path().string()));
    // The body of the PEM, without its armour lines, is what a bundle holds verbatim.
    std::string body;
    std::istringstream lines(ca->certificate_pem());
    for (std::string line; std::getline(lines, line);) {
        if (!line.starts_with("-----")) {
            body += line;
        }
    }
    for (const auto* bundle : {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}) {
        if (!std::filesystem::exists(bundle, ec)) {
            continue;
        }
        std::string flat;
        for (const char c : read_text(bundle)) {
            if (c != '\n' && c != '\r') {
                flat += c;
            }
        }
        if (flat.find(body) != std::string::npos) {
            say(verdict::ok, fmt::format("the system store trusts the CA ({})", bundle));
        } else {
            say(verdict::warn, fmt::format("the system store ({}) does not trust the CA: "
                                           "`portico ca install` adds it (and to Chromium's and "
                                           "Firefox's databases)",
                                           bundle));
        }
        return;
    }
}

/// How long `doctor` waits for the system's resolver to answer for a name.
constexpr std::chrono::seconds name_answer_limit{3};

/**
 * Resolves every name at once, each for at most `limit`: a name server that does not answer
 * costs the command one limit, not the system resolver's timeout for every name in turn.
 */
std::vector<resolve_outcome> resolve_all(const std::vector<std::string>& names,
                                         std::chrono::seconds limit)
{
    std::vector<resolve_outcome> outcomes(names.size());
    net::io_context io(1);
    // Declared after `io`, so gone before it: answers that come later are dropped.
    name_resolver resolver(deliver_by_post(io.get_executor()));
    for (std::size_t i = 0; i < names.size(); ++i) {
        net::co_spawn(
            io,
            [&, i]() -> task<void> {
                outcomes[i] = co_await resolve_within(resolver, names[i], "0", limit);
            },
            net::detached);
    }
    io.run();
    return outcomes;
}

void check_names(const config::config& cfg, report& say)
{
    std::vector<std::string> names;
    for (const auto& r : cfg.routes) {
        if (!r.is_wildcard() && std::find(names.begin(), names.end(), r.host) == names.end()) {
            names.push_back(r.host);
        }
    }
    names.push_back(cfg.admin);
    const auto outside = names_needing_hosts_entries(cfg);
    const auto outcomes = resolve_all(names, name_answer_limit);
    for (std::size_t i = 0; i < names.size(); ++i) {
        const auto& name = names[i];
        const auto& outcome = outcomes[i];
        if (outcome.error) {
            const auto why = outcome.timed_out
                                 ? fmt::format(" within {} s (the name server did not answer)",
                                               name_answer_limit.count())
                                 : std::string{};
            if (std::find(outside.begin(), outside.end(), name) != outside.end()) {
                say(verdict::fail, fmt::format("{} does not resolve{}: `sudo portico hosts "
                                               "--apply` adds it to /etc/hosts",
                                               name, why));
            } else {
                say(verdict::warn,
                    fmt::format("{} does not resolve{} for this system's tools (browsers and "
                                "curl resolve .localhost themselves; install libnss-myhostname "
                                "for the rest)",
                                name, why));
            }
            continue;
        }
        std::vector<std::string> foreign;
        for (const auto& ep : outcome.found) {
            if (!ep.address().is_loopback()) {
                foreign.push_back(ep.address().to_string());
            }
        }
        if (foreign.empty()) {
            say(verdict::ok, fmt::format("{} resolves to this machine", name));
        } else {
            say(verdict::fail, fmt::format("{} resolves to {}, not to this machine: requests "
                                           "would leave it; `sudo portico hosts --apply` pins it "
                                           "to 127.0.0.1",
                                           name, foreign.front()));
        }
    }
}

void check_backends(const config::config& cfg, report& say)
{
    const auto states =
        admin::probe_backends_now(admin::backends_of(cfg.routes), std::chrono::milliseconds(500));
    for (const auto& r : cfg.routes) {
        const auto it = states.find(r.to.text);
        const auto state = it == states.end() ? admin::backend_state::unknown : it->second;
        const auto route = r.name();
        switch (state) {
        case admin::backend_state::up:
            say(verdict::ok, fmt::format("{} -> {} is listening", route, r.to.text));
            break;
        case admin::backend_state::exposed:
            say(verdict::warn,
                fmt::format("{} -> {} is also listening on a non-loopback address, so the "
                            "network can reach it: bind the dev server to 127.0.0.1",
                            route, r.to.text));
            break;
        default:
            say(verdict::warn, fmt::format("{} -> {} is not listening: start the dev server",
                                           route, r.to.text));
            break;
        }
    }
}

void check_send_path(report& say)
{
    std::string why;
    if (proxy::send_batch::ring_available(why)) {
        say(verdict::ok, "io_uring: each turn's requests to backends go in one system call");
        return;
    }
    say(verdict::warn,
        fmt::format("io_uring refused ({}): requests to backends go one system call each, "
                    "slower when a backend shares portico's CPU (a container's seccomp "
                    "profile, or kernel.io_uring_disabled)",
                    why));
}

} // namespace

int doctor_command(const std::optional<std::filesystem::path>& cli_file)
{
    // What `run` would refuse or warn about (user certificates, the CA's names) is said too.
    const auto loaded = load_config(cli_file, /*for_serving=*/true);
    report say;
    if (!loaded) {
        say(verdict::fail, "the configuration is invalid (errors above)");
        return exit_config;
    }
    const auto& cfg = loaded->value;
    say(verdict::ok, fmt::format("config {} ({} route{})", loaded->display_name(),
                                 cfg.routes.size(), cfg.routes.size() == 1 ? "" : "s"));
    check_listeners(cfg, say);
    check_ca(cfg, say);
    check_names(cfg, say);
    check_backends(cfg, say);
    check_send_path(say);
    return say.failed ? exit_config : exit_ok;
}

} // namespace portico::cli
