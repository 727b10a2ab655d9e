#include "cli/reloader.hpp"

#include "cli/file_watcher.hpp"
#include "cli/route_listing.hpp"

#include "portico/admin/probe.hpp"
#include "portico/core/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>

#include <optional>
#include <thread>

namespace portico::cli {

struct reloader::impl {
    impl(proxy::server& s, config::location file, std::vector<std::filesystem::path> referenced)
        : server(s), where(std::move(file)), referenced_files(std::move(referenced)),
          monitor(executor(context.get_executor()), s.observatory(),
                  [&s] { return s.backends(); })
    {
    }

    /// The files whose change means a reload: the configuration and the files it names.
    std::vector<std::filesystem::path> watched_files() const
    {
        std::vector<std::filesystem::path> files;
        if (where.file) {
            files.push_back(*where.file);
        }
        files.insert(files.end(), referenced_files.begin(), referenced_files.end());
        return files;
    }

    void reload(std::string_view why)
    {
        if (server.is_stopping()) {
            // Nothing is served after the drain: no failure to report, nor to count.
            log::notice("reload_skipped", "reload: portico is shutting down; the file is not read",
                        {{"trigger", why}});
            return;
        }
        if (!where.file) {
            log::notice("reload_skipped",
                        "reload: portico runs on the built-in default; there is no file to read",
                        {{"trigger", why}});
            return;
        }
        const auto name = display_name(where);
        std::string errors;
        auto next = load_again(where, errors);
        if (!next) {
            server.observatory().record_reload(false, errors);
            report_reload_failure(name, "the previous configuration is still served");
        } else {
            auto result = server.reload(*next);
            for (const auto& note : result.notes) {
                log::notice("reload_note", "note: " + note, {{"message", note}});
            }
            if (!result.ok) {
                server.observatory().record_reload(false, result.message);
                report_reload_failure(name, result.message +
                                                "; the previous configuration is still served");
            } else {
                server.observatory().record_reload(true, {});
                const auto routes = next->routes.size();
                log::notice("reloaded",
                            fmt::format("config reloaded: {} ({} route{})", name, routes,
                                        routes == 1 ? "" : "s"),
                            {{"file", name}, {"routes", routes}, {"trigger", why}});
                log_route_table(where, next->routes);
                referenced_files = std::move(next->referenced_files);
                monitor.poke();
            }
        }
        // Named files and symlink targets may have changed with the edit.
        if (watcher) {
            watcher->watch(watched_files());
        }
    }

    static void report_reload_failure(const std::string& name, const std::string& what)
    {
        if (log::current_format() == log::format::json) {
            log::write(log::level::error, "reload_failed", {{"file", name}, {"message", what}});
        } else if (log::enabled(log::level::error)) {
            log::write_line(fmt::format("portico: reload of {} failed: {}", name, what));
        }
    }

    void wait_for_hangup()
    {
        hangup->async_wait([this](const boost::system::error_code& ec, int) {
            if (ec) {
                return;
            }
            reload("SIGHUP");
            wait_for_hangup();
        });
    }

    proxy::server& server;
    /// The configuration is the server's; a reload needs only where it came from and the
    /// files it names.
    config::location where;
    std::vector<std::filesystem::path> referenced_files;
    net::io_context context{1};
    admin::backend_monitor monitor;
    std::optional<net::signal_set> hangup;
    std::unique_ptr<file_watcher> watcher;
    std::thread thread;
};

reloader::reloader(proxy::server& server, config::location where,
                   std::vector<std::filesystem::path> referenced_files)
    : impl_(std::make_unique<impl>(server, std::move(where), std::move(referenced_files)))
{
}

reloader::~reloader() { stop(); }

void reloader::start()
{
    auto& i = *impl_;
    i.hangup.emplace(i.context, SIGHUP);
    i.wait_for_hangup();
    if (i.where.file) {
        try {
            i.watcher = std::make_unique<file_watcher>(executor(i.context.get_executor()),
                                                       [&i] { i.reload("file change"); });
            i.watcher->watch(i.watched_files());
            i.watcher->start();
        } catch (const std::system_error& e) {
            log::notice("watch_unavailable",
                        fmt::format("note: file changes are not watched ({}); send SIGHUP to "
                                    "reload",
                                    e.what()),
                        {{"error", e.what()}});
        }
    }
    i.monitor.start();
    i.thread = std::thread([&i] { i.context.run(); });
}

void reloader::stop()
{
    auto& i = *impl_;
    if (!i.thread.joinable()) {
        return;
    }
    net::post(i.context, [&i] {
        i.monitor.stop();
        if (i.watcher) {
            i.watcher->stop();
        }
        if (i.hangup) {
            i.hangup->cancel();
        }
    });
    i.thread.join();
}

} // namespace portico::cli
