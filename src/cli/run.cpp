#include "cli/run.hpp"

#include "cli/config_source.hpp"
#include "cli/reloader.hpp"
#include "cli/route_listing.hpp"
#include "portico/cli/app.hpp"
#include "portico/proxy/server.hpp"
#include "portico/tls/certificates.hpp"

#include <fmt/format.h>

#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>

#include <string>
#include <utility>
#include <vector>

namespace portico::cli {
namespace {

/**
 * Every connection costs a descriptor, two when it is forwarded, and a browser with a few
 * tabs of dev servers (each with a hot-reload socket) can use up the soft limit of 1024
 * Debian starts processes with; the hard limit is what the system allows this process.
 */
void raise_descriptor_limit()
{
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) {
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        log::write(log::level::debug, "descriptor_limit", {{"error", std::strerror(errno)}});
    }
}

} // namespace

int run_command(const run_options& options)
{
    // Logging first, so that configuration errors already follow --log-format.
    // A log reader that goes away (`portico run | head`) costs the log, not the server:
    // its writes fail with EPIPE instead of killing the process.
    std::signal(SIGPIPE, SIG_IGN);
    log::configure(options.log_level, options.log_format);
    // Serving never waits for stderr; the writer outlives every thread that logs below.
    const log::background_writer log_writer;
    raise_descriptor_limit();

    // OpenSSL's first use (its configuration file, error strings, the algorithms a context
    // fetches) is about a sixth of the work before the ready line; a thread of its own does
    // it while the configuration is read.
    std::jthread openssl_preparation(tls::prepare_openssl);
    auto loaded = load_config(options.config_file, /*for_serving=*/true);
    if (!loaded) {
        return exit_config;
    }
    log_route_table(loaded->where, loaded->value.routes);

    // The server takes the configuration over: a copy of a thousand routes would cost the
    // start a few hundred page faults. The reloader keeps what a reload needs.
    auto referenced_files = loaded->value.referenced_files;
    proxy::server server(std::move(loaded->value));
    // The certificate manager made in bind takes the contexts the thread made.
    openssl_preparation.join();
    const auto bound = server.bind();
    if (bound.error) {
        if (log::current_format() == log::format::json) {
            log::write(log::level::error, "bind_failed", {{"message", bound.message}});
        } else {
            log::write_line("portico: " + bound.message);
        }
        return exit_start;
    }
    reloader control(server, std::move(loaded->where), std::move(referenced_files));
    control.start();
    server.run(/*handle_signals=*/true);
    control.stop();
    return exit_ok;
}

} // namespace portico::cli
