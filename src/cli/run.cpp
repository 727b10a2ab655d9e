#include "cli/run.hpp"

#include "cli/config_source.hpp"
#include "cli/route_listing.hpp"
#include "portico/cli/app.hpp"
#include "portico/proxy/server.hpp"
#include "portico/routing/route_table.hpp"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace portico::cli {
namespace {

/// A configured feature this build does not serve yet.
struct pending_feature {
    std::string feature;   ///< the key that asks for it, e.g. "tls_passthrough"
    std::size_t route = 0; ///< 1-based route number, 0 when not about a route
    std::string message;   ///< the sentence shown to the user
};

/**
 * Lists what the configuration asks for that this build cannot do yet, so that a user is
 * told plainly instead of finding out from a failing request. Remove an entry when its
 * feature lands.
 */
std::vector<pending_feature> pending_features(const loaded_config& loaded)
{
    const auto& cfg = loaded.value;
    std::vector<pending_feature> pending;
    pending.push_back(
        {"admin", 0, fmt::format("the admin dashboard at {} is not implemented yet", cfg.admin)});
    if (loaded.where.file) {
        pending.push_back(
            {"reload", 0,
             fmt::format("reload (SIGHUP, file changes) is not implemented yet; restart portico "
                         "after editing {}",
                         loaded.display_name())});
    }
    return pending;
}

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

    for (const auto& p : pending_features(*loaded)) {
        const auto message = "note: " + p.message;
        if (p.route != 0) {
            log::notice("not_implemented", message,
                        {{"feature", p.feature}, {"route", p.route}, {"message", p.message}});
        } else {
            log::notice("not_implemented", message,
                        {{"feature", p.feature}, {"message", p.message}});
        }
    }

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
    server.run(/*handle_signals=*/true);
    return exit_ok;
}

} // namespace portico::cli
