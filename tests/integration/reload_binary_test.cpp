// Reloading the built binary the way users trigger it: SIGHUP, an editor saving in place or
// by rename, a symlinked file, an edit that does not validate; and `portico routes` states.

#include "support/child.hpp"
#include "support/origin.hpp"
#include "support/portico_process.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <stdexcept>

namespace portico::test {
namespace {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

// A save must be applied within a second (SPEC: Reload).
constexpr auto reload_limit = std::chrono::seconds(1);

std::string config_text(const fs::path& ca_dir, std::string_view routes)
{
    return fmt::format("listen: [127.0.0.1:0]\nworkers: 1\ntls: {{ ca_dir: {} }}\n{}",
                       ca_dir.string(), routes);
}

std::string two_routes(unsigned short a, unsigned short b)
{
    return fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n"
                       "  - host: new.localhost\n    to: 127.0.0.1:{}\n",
                       a, b);
}

int status_of(unsigned short port, std::string_view host)
{
    try {
        client c(port);
        return c.get(host, "/").result_int();
    } catch (const std::exception&) {
        return 0;
    }
}

/// Polls until `host` answers 200 or the reload limit passes; returns the time it took.
std::optional<std::chrono::milliseconds> time_until_served(unsigned short port,
                                                           std::string_view host,
                                                           clock::time_point saved)
{
    while (clock::now() - saved < reload_limit) {
        if (status_of(port, host) == 200) {
            return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - saved);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
}

/// Polls until `host` no longer answers 200 or the reload limit passes; whether it stopped.
bool time_until_gone(unsigned short port, std::string_view host, clock::time_point saved)
{
    while (clock::now() - saved < reload_limit) {
        if (status_of(port, host) != 200) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

void write_in_place(const fs::path& file, const std::string& text)
{
    std::ofstream out(file, std::ios::trunc);
    out << text;
}

/// What editors that save atomically do: write a temporary file, rename it over the old one.
void write_by_rename(const fs::path& file, const std::string& text)
{
    const auto temp = file.parent_path() / (".#" + file.filename().string() + ".tmp");
    {
        std::ofstream out(temp, std::ios::trunc);
        out << text;
    }
    fs::rename(temp, file);
}

/// `portico run -c file`, up to its ready line.
struct started {
    explicit started(const fs::path& file) : process({PORTICO_BINARY, "run", "-c", file.string()})
    {
        const auto ready = process.wait_for_line("ready");
        if (!ready) {
            throw std::runtime_error("portico did not start");
        }
        port = port_from_ready_line(*ready);
    }

    child process;
    unsigned short port = 0;
};

TEST(ReloadBinaryTest, ReadyLinesAreWrittenAtEveryLogLevel)
{
    // Scripts wait for them, whatever the log level; a listener added by a reload gets the
    // same line, and one written another way on the same port is not said to have stopped.
    origin a;
    temp_dir dir;
    const auto file = dir.path() / "portico.yaml";
    const auto route = fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n",
                                   a.port());
    write_in_place(file, config_text(dir.path() / "ca", route));
    child process({PORTICO_BINARY, "run", "-c", file.string(), "--log-level", "warn"});
    const auto ready = process.wait_for_line("portico ready:");
    ASSERT_TRUE(ready) << "no ready line at --log-level warn";
    EXPECT_TRUE(ready->ends_with("(1 route)")) << *ready;
    const auto port = port_from_ready_line(*ready);

    write_in_place(file, fmt::format("listen: [localhost:{}]\nworkers: 1\ntls: {{ ca_dir: {} }}\n{}",
                                     port, (dir.path() / "ca").string(), route));
    const auto added = process.wait_for_line(fmt::format("[::1]:{}", port), std::chrono::seconds(5));
    ASSERT_TRUE(added) << "no ready line for the reload's listener";
    EXPECT_EQ(*added, fmt::format("portico ready: http+https on [::1]:{} (1 route)", port));
    EXPECT_EQ(status_of(port, "app.localhost"), 200);

    // An address that now serves other protocols is announced again.
    write_in_place(file, fmt::format("listen:\n  - address: localhost:{}\n    tls: only\n"
                                     "workers: 1\ntls: {{ ca_dir: {} }}\n{}",
                                     port, (dir.path() / "ca").string(), route));
    EXPECT_TRUE(process.wait_for_line(fmt::format("portico ready: https on 127.0.0.1:{} (1 route)",
                                                  port),
                                      std::chrono::seconds(5)))
        << "no ready line for the changed listener";
    process.signal(SIGTERM);
    EXPECT_EQ(process.wait(), 0);
    for (const auto& line : process.lines()) {
        EXPECT_EQ(line.find("stopped listening"), std::string::npos) << line;
    }
}

TEST(ReloadBinaryTest, SaveInPlaceIsAppliedWithinASecond)
{
    origin a;
    origin b;
    running_portico portico(route_to(a.port()));
    ASSERT_EQ(status_of(portico.port, "new.localhost"), 404);
    const auto saved = clock::now();
    write_in_place(portico.dir.path() / "portico.yaml",
                   config_text(portico.ca_dir(), two_routes(a.port(), b.port())));
    const auto took = time_until_served(portico.port, "new.localhost", saved);
    ASSERT_TRUE(took) << "not served within a second of the save";
    EXPECT_TRUE(portico.process->wait_for_line("config reloaded: "));
    std::printf("in-place save applied after %lld ms\n", static_cast<long long>(took->count()));
}

TEST(ReloadBinaryTest, SaveByRenameIsAppliedWithinASecond)
{
    origin a;
    origin b;
    running_portico portico(route_to(a.port()));
    const auto saved = clock::now();
    write_by_rename(portico.dir.path() / "portico.yaml",
                    config_text(portico.ca_dir(), two_routes(a.port(), b.port())));
    const auto took = time_until_served(portico.port, "new.localhost", saved);
    ASSERT_TRUE(took) << "not served within a second of the save";
    std::printf("rename save applied after %lld ms\n", static_cast<long long>(took->count()));
    // A second save by rename is seen too (the watch follows the name, not the old file).
    write_by_rename(portico.dir.path() / "portico.yaml",
                    config_text(portico.ca_dir(), route_to(a.port())));
    EXPECT_TRUE(wait_until([&] { return status_of(portico.port, "new.localhost") == 404; },
                           reload_limit));
}

TEST(ReloadBinaryTest, SighupReloadsTheFile)
{
    origin a;
    running_portico portico(route_to(a.port()), {"--log-format", "json"});
    portico.process->signal(SIGHUP);
    const auto line = portico.process->wait_for_line("\"event\":\"reloaded\"");
    ASSERT_TRUE(line);
    EXPECT_NE(line->find("\"trigger\":\"SIGHUP\""), std::string::npos) << *line;
    EXPECT_NE(line->find("\"routes\":1"), std::string::npos) << *line;
    EXPECT_EQ(status_of(portico.port, "app.localhost"), 200);
    // Still running: SIGHUP is not a stop.
    portico.process->signal(SIGTERM);
    EXPECT_EQ(portico.process->wait(), 0);
}

TEST(ReloadBinaryTest, InvalidEditKeepsServingAndReportsFileLineColumn)
{
    origin a;
    origin b;
    running_portico portico(route_to(a.port()));
    const auto file = portico.dir.path() / "portico.yaml";
    write_in_place(file, config_text(portico.ca_dir(),
                                     "routes:\n  - host: new.localhost\n    to: nowhere\n"));
    const auto error = portico.process->wait_for_line("'to' must be", std::chrono::seconds(2));
    ASSERT_TRUE(error) << "no validation error logged";
    // listen, workers, tls, routes: the bad value is on line 6, column 9.
    EXPECT_TRUE(std::regex_search(*error, std::regex(R"(portico\.yaml:6:9: )"))) << *error;
    EXPECT_TRUE(portico.process->wait_for_line("the previous configuration is still served"));
    EXPECT_EQ(status_of(portico.port, "app.localhost"), 200);
    EXPECT_EQ(status_of(portico.port, "new.localhost"), 404);
    {
        client c(portico.port);
        const auto health = c.get("portico.localhost", "/api/health");
        EXPECT_NE(health.body().find("portico.yaml:6:9:"), std::string::npos) << health.body();
    }

    // Fixing the file clears the error.
    write_in_place(file, config_text(portico.ca_dir(), two_routes(a.port(), b.port())));
    EXPECT_TRUE(wait_until([&] { return status_of(portico.port, "new.localhost") == 200; },
                           reload_limit));
    // The workers take the new routes while the control thread is still recording the
    // reload's outcome: the error clears a moment after the route serves, not before.
    std::string health;
    EXPECT_TRUE(wait_until(
        [&] {
            client c(portico.port);
            health = c.get("portico.localhost", "/api/health").body();
            return health.find("\"last_error\":null") != std::string::npos;
        },
        reload_limit))
        << health;
}

TEST(ReloadBinaryTest, SymlinkedConfigIsFollowed)
{
    origin a;
    origin b;
    temp_dir dir;
    const auto ca = dir.path() / "ca";
    fs::create_directories(dir.path() / "shared");
    const auto real = dir.path() / "shared" / "team.yaml";
    write_in_place(real, config_text(ca, route_to(a.port())));
    const auto link = dir.path() / "portico.yaml";
    fs::create_symlink(real, link);
    const started portico(link);
    const auto port = portico.port;

    // Editing the target (by rename, in its own directory) is seen through the link.
    auto saved = clock::now();
    write_by_rename(real, config_text(ca, two_routes(a.port(), b.port())));
    EXPECT_TRUE(time_until_served(port, "new.localhost", saved));

    // Pointing the link at another file is a change too.
    const auto other = dir.path() / "shared" / "other.yaml";
    write_in_place(other, config_text(ca, "routes:\n  - host: other.localhost\n    to: 127.0.0.1:" +
                                              std::to_string(b.port()) + "\n"));
    const auto temp_link = dir.path() / "portico.yaml.new";
    fs::create_symlink(other, temp_link);
    saved = clock::now();
    fs::rename(temp_link, link);
    EXPECT_TRUE(time_until_served(port, "other.localhost", saved));
}

TEST(ReloadBinaryTest, SavesAreSeenAfterTheConfigsDirectoryIsDeletedAndMadeAgain)
{
    // A branch switch that removes config/ and brings it back: the directory's watch ends
    // with it, and the one made again must see the file and the saves after.
    origin a;
    origin b;
    origin c;
    temp_dir dir;
    const auto ca = dir.path() / "ca";
    const auto config_dir = dir.path() / "config";
    fs::create_directories(config_dir);
    const auto file = config_dir / "portico.yaml";
    write_in_place(file, config_text(ca, route_to(a.port())));
    started portico(file);
    EXPECT_EQ(status_of(portico.port, "new.localhost"), 404);

    fs::remove_all(config_dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    fs::create_directories(config_dir);
    auto saved = clock::now();
    write_in_place(file, config_text(ca, two_routes(a.port(), b.port())));
    // Found again within the retry (250 ms), then read as any save is.
    EXPECT_TRUE(time_until_served(portico.port, "new.localhost", saved + reload_limit / 2))
        << "the recreated file was not read";
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    saved = clock::now();
    write_by_rename(file, config_text(ca, fmt::format("routes:\n  - host: app.localhost\n"
                                                      "    to: 127.0.0.1:{}\n"
                                                      "  - host: third.localhost\n"
                                                      "    to: 127.0.0.1:{}\n",
                                                      a.port(), c.port())));
    EXPECT_TRUE(time_until_served(portico.port, "third.localhost", saved))
        << "a save after the directory came back was not seen";

    // Back empty, and the file saved only later: read once, when it comes, not reported
    // missing before.
    fs::remove_all(config_dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    fs::create_directories(config_dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    saved = clock::now();
    write_in_place(file, config_text(ca, route_to(a.port())));
    EXPECT_TRUE(time_until_gone(portico.port, "third.localhost", saved));
    // Reads what was logged (a line that never comes: every line until the wait ends).
    portico.process.wait_for_line("\x01", std::chrono::milliseconds(300));
    int reloads = 0;
    for (const auto& line : portico.process.lines()) {
        reloads += line.find("config reloaded") != std::string::npos ? 1 : 0;
        EXPECT_EQ(line.find("failed"), std::string::npos) << line;
    }
    EXPECT_EQ(reloads, 3) << "one reload for each of the three saves";
}

TEST(ReloadBinaryTest, ConfigBehindASwappedDirectorySymlinkIsFollowed)
{
    // A Kubernetes ConfigMap volume: portico.yaml -> ..data/portico.yaml, and an update
    // swaps the ..data symlink to a new directory in one rename.
    origin a;
    origin b;
    temp_dir dir;
    const auto ca = dir.path() / "ca";
    for (const auto* version : {"v1", "v2"}) {
        fs::create_directories(dir.path() / version);
    }
    write_in_place(dir.path() / "v1" / "portico.yaml", config_text(ca, route_to(a.port())));
    write_in_place(dir.path() / "v2" / "portico.yaml",
                   config_text(ca, two_routes(a.port(), b.port())));
    fs::create_directory_symlink("v1", dir.path() / "..data");
    const auto link = dir.path() / "portico.yaml";
    fs::create_symlink("..data/portico.yaml", link);
    const started portico(link);
    EXPECT_EQ(status_of(portico.port, "new.localhost"), 404);

    fs::create_directory_symlink("v2", dir.path() / "..data_tmp");
    const auto saved = clock::now();
    fs::rename(dir.path() / "..data_tmp", dir.path() / "..data");
    EXPECT_TRUE(time_until_served(portico.port, "new.localhost", saved));
}

/// The subject line `openssl s_client` prints for the certificate served for `sni`.
std::string served_subject(unsigned short port, const std::string& sni)
{
    const auto r = run_process({"openssl", "s_client", "-connect",
                                fmt::format("127.0.0.1:{}", port), "-servername", sni},
                               std::chrono::seconds(10));
    const auto at = r.out.find("subject=");
    return at == std::string::npos ? std::string() : r.out.substr(at, r.out.find('\n', at) - at);
}

TEST(ReloadBinaryTest, ReplacedCertificateFileIsServedWithoutRestart)
{
    origin backend;
    temp_dir dir;
    const auto cert = dir.path() / "legacy.pem";
    const auto key = dir.path() / "legacy-key.pem";
    std::string error;
    ASSERT_TRUE(make_self_signed(cert, key, "legacy.test", "first legacy", error)) << error;
    const auto file = dir.path() / "portico.yaml";
    write_in_place(file, fmt::format("listen: [127.0.0.1:0]\nworkers: 1\ntls:\n  ca_dir: {}\n"
                                     "  certificates:\n    - hosts: [legacy.test]\n"
                                     "      cert: {}\n      key: {}\n"
                                     "routes:\n  - host: legacy.test\n    to: 127.0.0.1:{}\n",
                                     (dir.path() / "ca").string(), cert.string(), key.string(),
                                     backend.port()));
    const started portico(file);
    EXPECT_NE(served_subject(portico.port, "legacy.test").find("first legacy"), std::string::npos);

    // A renewed certificate, written beside the old one and renamed over it, as tools do.
    const auto fresh_cert = dir.path() / "fresh.pem";
    const auto fresh_key = dir.path() / "fresh-key.pem";
    ASSERT_TRUE(make_self_signed(fresh_cert, fresh_key, "legacy.test", "second legacy", error))
        << error;
    fs::rename(fresh_key, key);
    fs::rename(fresh_cert, cert);
    EXPECT_TRUE(wait_until(
        [&] {
            return served_subject(portico.port, "legacy.test").find("second legacy") !=
                   std::string::npos;
        },
        std::chrono::seconds(5)));
}

class RoutesVerbTest : public binary_test {
protected:
    const char* binary() const override { return PORTICO_BINARY; }
};

TEST_F(RoutesVerbTest, ShowsEachBackendsState)
{
    origin up;
    refused_port down;
    write_file("portico.yaml",
               fmt::format("routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n"
                           "  - host: api.localhost\n    to: 127.0.0.1:{}\n",
                           up.port(), down.port()));
    const auto r = portico({"routes"});
    ASSERT_EQ(r.exit_code, 0) << r;
    const auto lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 3U) << r;
    EXPECT_NE(lines[0].find("STATE"), std::string::npos) << r;
    EXPECT_TRUE(std::regex_search(lines[1], std::regex(R"(^app\.localhost\s+/\s+\S+\s+up\s+-$)")))
        << r;
    EXPECT_TRUE(std::regex_search(lines[2], std::regex(R"(^api\.localhost\s+/\s+\S+\s+down\s+-$)")))
        << r;
}

} // namespace
} // namespace portico::test
