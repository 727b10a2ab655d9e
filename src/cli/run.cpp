#include "cli/run.hpp"

#include "cli/config_source.hpp"
#include "cli/reloader.hpp"
#include "cli/route_listing.hpp"
#include "portico/cli/app.hpp"
#include "portico/proxy/server.hpp"
#include "portico/routing/route_table.hpp"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace portico::cli {
namespace {

/// The configuration line and the table: text lines for a person, one object per route in JSON.
void log_route_table(const loaded_config& loaded, const routing::route_table& table)
{
    const auto& routes = table.routes();
    const auto name = loaded.display_name();
    log::notice("config",
                fmt::format("config: {} ({} {})", name, routes.size(),
                            routes.size() == 1 ? "route" : "routes"),
                {{"file", name}, {"routes", routes.size()}});

    const auto lines = format_route_table(routes);
    if (log::current_format() == log::format::text) {
        log::notice("route_header", lines.front(), {});
    }
    for (std::size_t i = 0; i < routes.size(); ++i) {
        const auto& r = routes[i];
        log::notice("route", lines[i + 1],
                    {{"host", r.host}, {"path", r.path}, {"to", r.to.text},
                     {"flags", route_flags(r)}});
    }
}

} // namespace

int run_command(const run_options& options)
{
    // Logging first, so that configuration errors already follow --log-format.
    log::configure(options.log_level, options.log_format);

    const auto loaded = load_config(options.config_file);
    if (!loaded) {
        return exit_config;
    }
    const routing::route_table table(loaded->value);
    log_route_table(*loaded, table);

    proxy::server server(loaded->value);
    const auto bound = server.bind();
    if (bound.error) {
        if (log::current_format() == log::format::json) {
            log::write(log::level::error, "bind_failed", {{"message", bound.message}});
        } else {
            fmt::print(stderr, "portico: {}\n", bound.message);
        }
        return exit_start;
    }
    reloader control(server, *loaded);
    control.start();
    server.run(/*handle_signals=*/true);
    control.stop();
    return exit_ok;
}

} // namespace portico::cli
