// The command line as users and scripts see it: the built binary runs as a child process on
// configuration files written to a fresh temporary directory, and each test checks its exit
// code, stdout and stderr.

#include "support/name_server.hpp"
#include "support/process.hpp"

#include "proxy/send_batch.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cxxabi.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace {

namespace fs = std::filesystem;
using portico::test::contains;
using portico::test::lines_of;

constexpr std::string_view valid_yaml = R"(listen:
  - 127.0.0.1:7080
routes:
  - host: app.localhost
    to: 127.0.0.1:5173
  - host: app.localhost
    path: /api
    strip_prefix: true
    to: http://127.0.0.1:8000
)";

// Two errors: an unknown key (reported at the key) and a bad `to` (reported at the value).
constexpr std::string_view two_errors_yaml = R"(listn: 127.0.0.1:7080
routes:
  - host: app.localhost
    to: 127.0.0.1:notaport
)";

std::string single_route_yaml(std::string_view host)
{
    return "routes:\n  - host: " + std::string(host) + "\n    to: 127.0.0.1:5173\n";
}

class CliTest : public portico::test::binary_test {
protected:
    const char* binary() const override { return PORTICO_BINARY; }
};

/**
 * `doctor` resolves the routes' names through the system: its tests run it where names
 * are looked up in a hosts file and at a name server on a loopback address of the test's
 * own, so that no query leaves the machine.
 */
class DoctorTest : public CliTest {
protected:
    void SetUp() override
    {
        CliTest::SetUp();
        if (!dns_.unusable.empty()) {
            GTEST_SKIP() << dns_.unusable;
        }
        launcher_ = dns_.launcher;
    }

    portico::test::test_name_server dns_{"127.0.83.71", portico::test::test_name_server::absent};
};

TEST_F(CliTest, HelpOnEveryVerbExitsZero)
{
    const std::vector<std::vector<std::string>> invocations = {
        {"--help"},         {"-h"},        {"run", "--help"},        {"check", "-h"},
        {"routes", "--help"}, {"ca", "--help"}, {"ca", "path", "--help"},
        {"ca", "install", "-h"}, {"ca", "uninstall", "--help"}, {"hosts", "--help"},
        {"doctor", "--help"}, {"version", "--help"}, {"-c", "x.yaml", "--help"},
    };
    for (const auto& args : invocations) {
        const auto r = portico(args);
        EXPECT_EQ(r.exit_code, 0) << args.front() << "\n" << r;
        EXPECT_TRUE(contains(r.out, "Usage")) << r;
        EXPECT_TRUE(r.err.empty()) << r;
    }
}

TEST_F(CliTest, TopLevelHelpListsEveryVerb)
{
    const auto r = portico({"--help"});
    ASSERT_EQ(r.exit_code, 0) << r;
    for (const auto* verb : {"run", "check", "routes", "ca", "hosts", "doctor", "version"}) {
        EXPECT_TRUE(contains(r.out, verb)) << verb << "\n" << r;
    }
}

TEST_F(CliTest, RunHelpNamesItsOptions)
{
    const auto r = portico({"run", "--help"});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "--log-level")) << r;
    EXPECT_TRUE(contains(r.out, "--log-format")) << r;
    EXPECT_TRUE(contains(r.out, "-c")) << r;
}

TEST_F(CliTest, UnknownVerbExitsTwo)
{
    const auto r = portico({"serve"});
    EXPECT_EQ(r.exit_code, 2) << r;
    EXPECT_TRUE(contains(r.err, "serve")) << r;
    EXPECT_TRUE(contains(r.err, "portico --help")) << r;
    EXPECT_TRUE(r.out.empty()) << r;
}

TEST_F(CliTest, UnknownOptionExitsTwo)
{
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"check", "--bogus"}, {"--bogus"}, {"routes", "-x"}, {"version", "--short"}}) {
        const auto r = portico(args);
        EXPECT_EQ(r.exit_code, 2) << r;
        EXPECT_TRUE(contains(r.err, args.back())) << r;
        EXPECT_TRUE(contains(r.err, "--help")) << r;
        EXPECT_TRUE(r.out.empty()) << r;
    }
}

TEST_F(CliTest, BadOptionValueExitsTwo)
{
    const auto level = portico({"--log-level", "loud"});
    EXPECT_EQ(level.exit_code, 2) << level;
    EXPECT_TRUE(contains(level.err, "loud")) << level;
    EXPECT_TRUE(contains(level.err, "portico run --help")) << level;

    const auto format = portico({"run", "--log-format", "xml"});
    EXPECT_EQ(format.exit_code, 2) << format;
    EXPECT_TRUE(contains(format.err, "xml")) << format;

    const auto empty_file = portico({"check", "-c", ""});
    EXPECT_EQ(empty_file.exit_code, 2) << empty_file;

    const auto missing_value = portico({"check", "-c"});
    EXPECT_EQ(missing_value.exit_code, 2) << missing_value;
}

TEST_F(CliTest, RunOptionOnAnotherVerbExitsTwo)
{
    const auto r = portico({"check", "--log-level", "debug"});
    EXPECT_EQ(r.exit_code, 2) << r;
    EXPECT_TRUE(contains(r.err, "portico check --help")) << r;
}

TEST_F(CliTest, CaWithoutActionExitsTwo)
{
    const auto r = portico({"ca"});
    EXPECT_EQ(r.exit_code, 2) << r;
    const auto unknown = portico({"ca", "trust"});
    EXPECT_EQ(unknown.exit_code, 2) << unknown;
}

TEST_F(CliTest, HostsApplyAndRemoveExcludeEachOther)
{
    const auto r = portico({"hosts", "--apply", "--remove"});
    EXPECT_EQ(r.exit_code, 2) << r;
}

constexpr std::string_view hosts_yaml = R"(admin: dash.test
routes:
  - host: app.localhost
    to: 127.0.0.1:5173
  - host: Legacy.Test.
    to: 127.0.0.1:8000
  - host: legacy.test
    path: /api
    to: 127.0.0.1:8001
  - host: "*.preview.test"
    to: 127.0.0.1:8002
  - host: 127.0.0.1
    to: 127.0.0.1:8003
)";

TEST_F(CliTest, HostsPrintsLinesForNamesOutsideLocalhost)
{
    write_file("portico.yaml", hosts_yaml);
    const auto r = portico({"hosts"});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(r.out, "127.0.0.1 legacy.test\n127.0.0.1 dash.test\n") << r;
    EXPECT_TRUE(contains(r.err, "*.preview.test is a wildcard")) << r;
}

TEST_F(CliTest, HostsApplyAndRemoveManageOneBlockIdempotently)
{
    write_file("portico.yaml", hosts_yaml);
    const std::string original = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n# mine\n"
                                 "10.0.0.5 nas.lan";
    const auto file = write_file("hosts", original);
    const portico::test::env_overrides env{{"PORTICO_HOSTS_FILE", file.string()}};

    auto r = portico({"hosts", "--apply"}, env);
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "2 names now resolve to 127.0.0.1")) << r;
    const auto applied = read_file(file);
    EXPECT_EQ(applied, original + "\n# portico begin (managed by `portico hosts`)\n"
                                  "127.0.0.1 legacy.test\n127.0.0.1 dash.test\n# portico end\n");

    r = portico({"hosts", "--apply"}, env);
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "already has portico's lines")) << r;
    EXPECT_EQ(read_file(file), applied);

    // A changed configuration replaces the block instead of adding a second one.
    write_file("portico.yaml", "routes:\n  - host: other.test\n    to: 127.0.0.1:9000\n");
    r = portico({"hosts", "--apply"}, env);
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(read_file(file), original + "\n# portico begin (managed by `portico hosts`)\n"
                                          "127.0.0.1 other.test\n# portico end\n");

    r = portico({"hosts", "--remove"}, env);
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(read_file(file), original + "\n");
    r = portico({"hosts", "--remove"}, env);
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "has no portico lines")) << r;
}

TEST_F(CliTest, HostsApplyOnAFileItCannotReadExitsOne)
{
    write_file("portico.yaml", hosts_yaml);
    const auto r = portico({"hosts", "--apply"},
                           {{"PORTICO_HOSTS_FILE", (dir_ / "missing" / "hosts").string()}});
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_TRUE(contains(r.err, "cannot read")) << r;
}

TEST_F(CliTest, HostsBlockWithoutItsEndIsRefusedAndTheFileKept)
{
    write_file("portico.yaml", hosts_yaml);
    // A hand edit took the end line: what follows the begin line is the user's own.
    const std::string original = "127.0.0.1 localhost\n# portico begin (managed by `portico "
                                 "hosts`)\n10.0.0.1 mine.example\n192.168.1.5 nas.lan\n";
    const auto file = write_file("hosts", original);
    const portico::test::env_overrides env{{"PORTICO_HOSTS_FILE", file.string()}};
    for (const auto* action : {"--remove", "--apply"}) {
        const auto r = portico({"hosts", action}, env);
        EXPECT_EQ(r.exit_code, 1) << action << r;
        EXPECT_TRUE(contains(r.err, "line 2 begins portico's block but no \"# portico end\""))
            << action << r;
        EXPECT_EQ(read_file(file), original) << action;
    }
}

TEST_F(CliTest, HostsApplyWritesThroughASymbolicLink)
{
    write_file("portico.yaml", hosts_yaml);
    const std::string original = "127.0.0.1 localhost\n";
    const auto target = write_file("etc-static/hosts", original);
    const auto link = dir_ / "hosts";
    fs::create_symlink(target, link);
    const auto r = portico({"hosts", "--apply"}, {{"PORTICO_HOSTS_FILE", link.string()}});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(fs::is_symlink(link));
    EXPECT_TRUE(contains(read_file(target), "127.0.0.1 legacy.test\n")) << read_file(target);
}

TEST_F(CliTest, HostsWriteThatFailsLeavesTheFileAsItWas)
{
    write_file("portico.yaml", hosts_yaml);
    std::string original = "127.0.0.1 localhost\n";
    for (int i = 0; original.size() < 8192; ++i) {
        original += fmt::format("10.1.{}.{} host{}.lan\n", i / 250, i % 250, i);
    }
    const auto file = write_file("hosts", original);
    {
        // A file-size limit stands in for a full disk: the write fails with EFBIG part-way.
        // The limit and the ignored signal are inherited by the child, and put back after.
        const portico::test::file_size_limit limit(4096);
        const auto r = portico({"hosts", "--apply"}, {{"PORTICO_HOSTS_FILE", file.string()}});
        EXPECT_EQ(r.exit_code, 1) << r;
        EXPECT_TRUE(contains(r.err, "cannot write")) << r;
    }
    EXPECT_EQ(read_file(file), original);
    for (const auto& entry : fs::directory_iterator(dir_)) {
        EXPECT_FALSE(entry.path().filename().string().starts_with(".hosts"))
            << "temporary file left: " << entry.path();
    }
}

TEST_F(CliTest, HostsFileWritableInADirectoryThatIsNotIsRewrittenInPlace)
{
    // Some make /etc/hosts writable (chmod, an ACL) to edit it without sudo; no temporary
    // file can be made beside it. Root ignores the modes, so as root the binary runs as
    // nobody.
    if (::geteuid() == 0) {
        if (!fs::exists("/usr/bin/setpriv")) {
            GTEST_SKIP() << "running as root without setpriv to drop to nobody";
        }
        launcher_ = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
        fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read |
                                  fs::perms::group_exec | fs::perms::others_read |
                                  fs::perms::others_exec);
        if (portico({"--version"}).exit_code != 0) {
            GTEST_SKIP() << "nobody cannot run " << binary() << " where it was built";
        }
    }
    write_file("portico.yaml", hosts_yaml);
    const std::string original = "127.0.0.1 localhost\n";
    const auto file = write_file("etc/hosts", original);
    fs::permissions(file, fs::perms::all & ~(fs::perms::owner_exec | fs::perms::group_exec |
                                              fs::perms::others_exec));
    fs::permissions(file.parent_path(), fs::perms::owner_read | fs::perms::owner_exec |
                                            fs::perms::group_read | fs::perms::group_exec |
                                            fs::perms::others_read | fs::perms::others_exec);
    const portico::test::env_overrides env{{"PORTICO_HOSTS_FILE", file.string()}};
    auto r = portico({"hosts", "--apply", "-c", (dir_ / "portico.yaml").string()}, env);
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(read_file(file), original + "# portico begin (managed by `portico hosts`)\n"
                                          "127.0.0.1 legacy.test\n127.0.0.1 dash.test\n"
                                          "# portico end\n");
    r = portico({"hosts", "--remove", "-c", (dir_ / "portico.yaml").string()}, env);
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(read_file(file), original);
    fs::permissions(file.parent_path(), fs::perms::owner_all);
}

/// Loopback sockets for `doctor` to find: one listening, one bound but refusing.
struct doctor_sockets {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor listening{io, {boost::asio::ip::make_address("127.0.0.1"), 0}};
    boost::asio::ip::tcp::acceptor refusing{io};

    doctor_sockets()
    {
        listening.listen();
        refusing.open(boost::asio::ip::tcp::v4());
        refusing.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
    }
    unsigned short up() const { return listening.local_endpoint().port(); }
    unsigned short down() const { return refusing.local_endpoint().port(); }
};

TEST_F(DoctorTest, DoctorPassesAHealthySetupAndReportsBackends)
{
    const doctor_sockets s;
    write_file("portico.yaml",
               fmt::format("listen: [127.0.0.1:0]\ntls: {{ ca_dir: ca }}\nroutes:\n"
                           "  - host: app.localhost\n    to: 127.0.0.1:{}\n"
                           "  - host: api.localhost\n    to: 127.0.0.1:{}\n",
                           s.up(), s.down()));
    const auto r = portico({"doctor"});
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "ok    config ./portico.yaml (2 routes)")) << r;
    EXPECT_TRUE(contains(r.out, fmt::format("app.localhost -> 127.0.0.1:{} is listening", s.up())))
        << r;
    EXPECT_TRUE(contains(r.out, fmt::format("warn  api.localhost -> 127.0.0.1:{} is not listening",
                                            s.down())))
        << r;
    EXPECT_TRUE(contains(r.out, "no local CA yet")) << r;
    EXPECT_FALSE(fs::exists(dir_ / "ca")) << "doctor must not create the CA";
    // Which way requests to backends are sent, as this process finds it too.
    std::string why;
    const bool ring = portico::proxy::send_batch::ring_available(why);
    EXPECT_TRUE(contains(r.out, ring ? std::string("ok    io_uring: ")
                                     : "warn  io_uring refused (" + why + ")"))
        << r;
}

TEST_F(DoctorTest, DoctorSaysWhatRunWouldWarnAbout)
{
    write_file("first.yaml", "listen: [127.0.0.1:0]\ntls:\n  ca_dir: ca\n");
    ASSERT_EQ(portico({"ca", "path", "-c", "first.yaml"}).exit_code, 0);
    write_file("changed.yaml", "listen: [127.0.0.1:0]\ntls:\n  ca_dir: ca\n"
                               "  ca_permitted_names: [dev.internal, localhost]\n");
    const auto r = portico({"doctor", "-c", "changed.yaml"});
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.err, "warning: changed.yaml:4:23: tls.ca_permitted_names is")) << r;
}

TEST_F(DoctorTest, DoctorFailsOnAPortAnotherProgramHolds)
{
    const doctor_sockets s;
    write_file("portico.yaml", fmt::format("listen: [127.0.0.1:{}]\n", s.up()));
    const auto r = portico({"doctor"});
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_TRUE(contains(r.out, fmt::format("fail  127.0.0.1:{} is used by another program", s.up())))
        << r;
}

TEST_F(DoctorTest, DoctorFailsOnANameThatDoesNotResolve)
{
    write_file("portico.yaml", "routes:\n  - host: nothing-here.invalid\n    to: 127.0.0.1:9\n");
    const auto r = portico({"doctor"});
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_TRUE(contains(r.out, "fail  nothing-here.invalid does not resolve: `sudo portico hosts "
                                "--apply`"))
        << r;
}

TEST_F(CliTest, DoctorWaitsForNamesAtOnceAndBoundsTheWait)
{
    // A name server that never answers: each name is given up after 3 s, all of them at
    // once, instead of the system's 5 s a name one after another (15 s here).
    const portico::test::test_name_server dns("127.0.83.72");
    if (!dns.unusable.empty()) {
        GTEST_SKIP() << dns.unusable;
    }
    launcher_ = dns.launcher;
    write_file("portico.yaml", "routes:\n  - host: app.localhost\n    to: 127.0.0.1:9\n"
                               "  - host: api.localhost\n    to: 127.0.0.1:9\n");
    const auto start = std::chrono::steady_clock::now();
    const auto r = portico({"doctor"}, {}, std::chrono::seconds(20));
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_FALSE(r.timed_out) << r;
    EXPECT_LT(took, std::chrono::milliseconds(4500)) << r;
    for (const auto* name : {"app.localhost", "api.localhost", "portico.localhost"}) {
        EXPECT_TRUE(contains(r.out, fmt::format("warn  {} does not resolve within 3 s (the name "
                                                "server did not answer)",
                                                name)))
            << r;
    }
}

TEST(SubprocessTest, AChildPastItsDeadlineIsKilled)
{
    const auto start = std::chrono::steady_clock::now();
    const auto r = portico::test::run_process({"sleep", "30"}, std::chrono::milliseconds(300));
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_TRUE(r.timed_out) << r;
    EXPECT_FALSE(r.succeeded()) << r;
    EXPECT_LT(took, std::chrono::seconds(5)) << r;
}

TEST_F(CliTest, VersionPrintsProjectVersion)
{
    const auto r = portico({"version"});
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(std::regex_match(r.out, std::regex(R"(portico \d+\.\d+\.\d+\n)"))) << r;
    EXPECT_TRUE(r.err.empty()) << r;
    const auto flag = portico({"--version"});
    EXPECT_EQ(flag.exit_code, 0) << flag;
    EXPECT_EQ(flag.out, r.out);
}

#if PORTICO_STATIC_LINK
// The compact build (decision 0011): OpenSSL, yaml-cpp, fmt and the C++ runtime are linked in,
// so the dynamic loader maps the C library alone (and names itself); relocations are packed
// and symbols bound at start, so the relocated data is read-only afterwards.
TEST_F(CliTest, BinaryLoadsOnlyTheCLibraryAndIsHardened)
{
    const auto r = portico::test::run_process({"readelf", "--dynamic", "--wide", PORTICO_BINARY});
    ASSERT_EQ(r.exit_code, 0) << r;
    int needed = 0;
    for (const auto& line : lines_of(r.out)) {
        if (contains(line, "(NEEDED)")) {
            ++needed;
            EXPECT_TRUE(contains(line, "[libc.so.6]") || contains(line, "[ld-linux")) << line;
        }
    }
    EXPECT_GE(needed, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "BIND_NOW")) << r.out; // full RELRO
#if PORTICO_PACKED_RELOCATIONS
    EXPECT_TRUE(contains(r.out, "(RELR)")) << r.out;
#endif
}
#endif

#ifdef PORTICO_LINK_ORDER_FILE
// Whether `symbol` (demangled) is the function `name` itself: after its return type if it is a
// template, with its own parameters or template arguments next, and not a lambda within it.
bool names_function(std::string_view symbol, std::string_view name)
{
    const auto at = symbol.find(name);
    if (at == std::string_view::npos || (at > 0 && symbol[at - 1] != ' ')) {
        return false;
    }
    const auto next = at + name.size();
    return next < symbol.size() && (symbol[next] == '(' || symbol[next] == '<') &&
           symbol.find("::{lambda") == std::string_view::npos;
}

// The order lld lays the code out in names functions by their mangled names, which change with
// a signature. A function the request path runs that the list no longer names lands outside
// the pages start-up already touched, and costs idle memory the first time connections pile up
// (about 0.4 MiB when serve_connection's signature changed). Regenerate: scripts/link-order.sh.
TEST_F(CliTest, CodeOrderNamesTheRequestPath)
{
    std::ifstream order_file(PORTICO_LINK_ORDER_FILE);
    ASSERT_TRUE(order_file) << PORTICO_LINK_ORDER_FILE;
    std::unordered_set<std::string> ordered;
    for (std::string line; std::getline(order_file, line);) {
        ordered.insert(line);
    }
    const auto r = portico::test::run_process({"nm", "--defined-only", PORTICO_BINARY});
    ASSERT_EQ(r.exit_code, 0) << r;
    // From accepting a plain connection to parking it after its answer, and the backend
    // connection its request opens.
    const std::vector<std::string_view> request_path = {
        "portico::proxy::worker::accept_loop",
        "portico::proxy::worker::serve_accepted",
        "portico::proxy::worker::register_connection",
        "portico::proxy::worker::unregister_connection",
        "portico::proxy::heap_trimmer::serving",
        "portico::proxy::serve_connection",
        "portico::proxy::serve_unparked",
        "portico::proxy::(anonymous namespace)::serve_requests",
        "portico::proxy::(anonymous namespace)::serve_request",
        "portico::proxy::(anonymous namespace)::exchange",
        "portico::proxy::upstream_pool::connect_tcp",
        "portico::proxy::upstream_pool::connect_socket",
        "portico::proxy::parking_lot::park",
        "portico::proxy::parking_lot::take_ready",
        "portico::proxy::send_batch::flush",
    };
    std::vector<int> found(request_path.size(), 0);
    for (const auto& row : lines_of(r.out)) {
        std::istringstream fields(row);
        std::string address, type, name;
        if (!(fields >> address >> type >> name) || (type != "t" && type != "T" && type != "W")) {
            continue;
        }
        // Cold clones are meant to lie apart.
        if (contains(name, ".cold")) {
            continue;
        }
        int status = 0;
        std::unique_ptr<char, decltype(&std::free)> demangled(
            abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status), &std::free);
        if (status != 0) {
            continue;
        }
        const std::string_view readable = demangled.get();
        // Instances for TLS backends, which the profile does not use.
        if (contains(readable, "ssl::stream<")) {
            continue;
        }
        for (std::size_t i = 0; i < request_path.size(); ++i) {
            if (names_function(readable, request_path[i])) {
                ++found[i];
                EXPECT_TRUE(ordered.contains(name))
                    << readable << " is not in cmake/link-order.txt: run scripts/link-order.sh";
            }
        }
    }
    for (std::size_t i = 0; i < request_path.size(); ++i) {
        EXPECT_GT(found[i], 0) << "no function " << request_path[i] << " in the binary";
    }
}
#endif

TEST_F(CliTest, CheckValidFilePrintsTable)
{
    write_file("app.yaml", valid_yaml);
    const auto r = portico({"check", "-c", "app.yaml"});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(r.err.empty()) << r;
    const auto lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 4U) << r;
    EXPECT_TRUE(contains(lines[0], "app.yaml")) << r;
    EXPECT_TRUE(contains(lines[0], "(2 routes)")) << r;
    EXPECT_TRUE(std::regex_match(lines[1], std::regex(R"(HOST +PATH +TARGET +FLAGS)"))) << r;
    EXPECT_TRUE(std::regex_match(lines[2], std::regex(R"(app\.localhost +/ +127\.0\.0\.1:5173 +-)")))
        << r;
    EXPECT_TRUE(std::regex_match(
        lines[3], std::regex(R"(app\.localhost +/api +http://127\.0\.0\.1:8000 +strip_prefix)")))
        << r;
}

TEST_F(CliTest, CheckShowsSocketPathsAsResolved)
{
    // A relative socket path is relative to the file; the table says where that is.
    std::filesystem::create_directories(dir_ / "conf");
    write_file("conf/app.yaml", "routes:\n  - host: app.localhost\n    to: unix:run/app.sock\n");
    const auto r = portico({"check", "-c", "conf/app.yaml"});
    ASSERT_EQ(r.exit_code, 0) << r;
    const auto expected = "unix:" + (std::filesystem::absolute(dir_) / "conf/run/app.sock")
                                        .lexically_normal()
                                        .string();
    EXPECT_TRUE(contains(r.out, expected)) << expected << r;
}

TEST_F(CliTest, CheckReportsEveryErrorWithPosition)
{
    write_file("bad.yaml", two_errors_yaml);
    const auto r = portico({"check", "-c", "bad.yaml"});
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_TRUE(r.out.empty()) << r; // nothing is listed from a file that failed
    EXPECT_TRUE(contains(r.err, "bad.yaml:1:1: ")) << r;
    EXPECT_TRUE(contains(r.err, "bad.yaml:4:9: ")) << r;
    EXPECT_TRUE(contains(r.err, "portico: 2 errors in bad.yaml")) << r;
    EXPECT_EQ(lines_of(r.err).size(), 3U) << r;
}

TEST_F(CliTest, MissingConfigFileExitsOne)
{
    for (const auto* verb : {"check", "routes", "run"}) {
        const auto r = portico({verb, "-c", "missing.yaml"});
        EXPECT_EQ(r.exit_code, 1) << verb << "\n" << r;
        EXPECT_TRUE(contains(r.err, "missing.yaml")) << r;
        EXPECT_TRUE(r.out.empty()) << r;
    }
}

TEST_F(CliTest, MissingPorticoConfigFileExitsOne)
{
    write_file("portico.yaml", single_route_yaml("cwd.localhost"));
    const auto r =
        portico({"check"}, {{"PORTICO_CONFIG", (dir_ / "missing.yaml").string()}});
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_TRUE(contains(r.err, "missing.yaml")) << r;
}

TEST_F(CliTest, LookupFindsPorticoYamlInWorkingDirectory)
{
    write_file("portico.yaml", single_route_yaml("cwd.localhost"));
    write_file("config/portico.yaml", single_route_yaml("subdir.localhost"));
    const auto r = portico({"check"});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "portico.yaml (1 route)")) << r;
    EXPECT_TRUE(contains(r.out, "cwd.localhost")) << r;
    EXPECT_FALSE(contains(r.out, "subdir.localhost")) << r;
}

TEST_F(CliTest, LookupFallsBackToConfigDirectory)
{
    write_file("config/portico.yaml", single_route_yaml("subdir.localhost"));
    const auto r = portico({"check"});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "config/portico.yaml")) << r;
    EXPECT_TRUE(contains(r.out, "subdir.localhost")) << r;
}

TEST_F(CliTest, PorticoConfigOverridesLookup)
{
    write_file("portico.yaml", single_route_yaml("cwd.localhost"));
    const auto env_file = write_file("elsewhere/env.yaml", single_route_yaml("env.localhost"));
    const auto r = portico({"check"}, {{"PORTICO_CONFIG", env_file.string()}});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "env.localhost")) << r;
    EXPECT_FALSE(contains(r.out, "cwd.localhost")) << r;
}

TEST_F(CliTest, ConfigOptionBeatsPorticoConfig)
{
    const auto env_file = write_file("env.yaml", single_route_yaml("env.localhost"));
    write_file("cli.yaml", single_route_yaml("cli.localhost"));
    const auto r = portico({"check", "-c", "cli.yaml"}, {{"PORTICO_CONFIG", env_file.string()}});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "cli.localhost")) << r;
    EXPECT_FALSE(contains(r.out, "env.localhost")) << r;
}

TEST_F(CliTest, BuiltInDefaultWhenNothingIsFound)
{
    const auto r = portico({"check"});
    ASSERT_EQ(r.exit_code, 0) << r;
    const auto lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 2U) << r;
    EXPECT_EQ(lines[0], "config: built-in default (0 routes)");
    EXPECT_TRUE(lines[1].starts_with("HOST")) << r;
}

TEST_F(CliTest, RoutesPrintsAlignedHeaderAndRows)
{
    write_file("portico.yaml", valid_yaml);
    const auto r = portico({"routes"});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(r.err.empty()) << r;
    const auto lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 3U) << r;
    const auto& header = lines[0];
    ASSERT_TRUE(header.starts_with("HOST")) << r;
    for (const auto* column : {"PATH", "TARGET", "FLAGS"}) {
        const auto at = header.find(column);
        ASSERT_NE(at, std::string::npos) << r;
        for (std::size_t i = 1; i < lines.size(); ++i) {
            ASSERT_GT(lines[i].size(), at) << r;
            EXPECT_EQ(lines[i][at - 1], ' ') << column << "\n" << r;
            EXPECT_NE(lines[i][at], ' ') << column << "\n" << r;
        }
    }
    for (const auto& line : lines) {
        EXPECT_NE(line.back(), ' ') << "trailing blank\n" << r;
    }
}

TEST_F(CliTest, RoutesShowsFlagsColumn)
{
    write_file("portico.yaml", R"(routes:
  - host: secure.localhost
    to: https://127.0.0.1:3443
    redirect_https: true
  - host: db.localhost
    tls_passthrough: true
    to: 127.0.0.1:5433
)");
    const auto r = portico({"routes"});
    ASSERT_EQ(r.exit_code, 0) << r;
    const auto lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 3U) << r;
    EXPECT_TRUE(lines[1].ends_with(" redirect_https")) << r;
    EXPECT_TRUE(lines[2].ends_with(" tls_passthrough")) << r;
}

TEST_F(CliTest, WarningsDoNotFailCheck)
{
    // insecure_skip_verify means nothing for a plain-HTTP backend: valid, but worth a word.
    write_file("portico.yaml", R"(routes:
  - host: app.localhost
    to: 127.0.0.1:5173
    insecure_skip_verify: true
)");
    const auto r = portico({"check"});
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(r.err.starts_with("warning: ")) << r;
    EXPECT_TRUE(contains(r.err, "portico.yaml:4:27: ")) << r;
    EXPECT_TRUE(contains(r.out, "app.localhost")) << r;
}

TEST_F(CliTest, UserCertificatesAreCheckedAsRunLoadsThem)
{
    // Two certificates: one whose key is the other's, and one that names none of its hosts.
    for (const auto* name : {"one", "two"}) {
        const auto made = portico::test::run_process(
            {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", fmt::format("/CN={}", name), "-addext",
             fmt::format("subjectAltName=DNS:{}.test", name), "-keyout",
             (dir_ / fmt::format("{}-key.pem", name)).string(), "-out",
             (dir_ / fmt::format("{}.pem", name)).string()});
        ASSERT_EQ(made.exit_code, 0) << made;
    }
    write_file("mismatch.yaml", R"(tls:
  certificates:
    - hosts: [one.test]
      cert: one.pem
      key: two-key.pem
)");
    for (const auto* verb : {"check", "run"}) {
        const auto r = portico({verb, "-c", "mismatch.yaml"});
        EXPECT_EQ(r.exit_code, 1) << verb << r;
        EXPECT_TRUE(contains(r.err, "mismatch.yaml:5:12: ")) << verb << r;
        EXPECT_TRUE(contains(r.err, "does not belong to the certificate")) << verb << r;
        EXPECT_TRUE(contains(r.err, "1 error in mismatch.yaml")) << verb << r;
    }
    // Verbs that serve nothing are not held up by it.
    EXPECT_EQ(portico({"hosts", "-c", "mismatch.yaml"}).exit_code, 0);

    write_file("uncovered.yaml", R"(tls:
  certificates:
    - hosts: [one.test, "*.one.test", other.test]
      cert: one.pem
      key: one-key.pem
)");
    const auto r = portico({"check", "-c", "uncovered.yaml"});
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(lines_of(r.err).size(), 2U) << r;
    EXPECT_TRUE(contains(r.err, "uncovered.yaml:4:13: ")) << r;
    EXPECT_TRUE(contains(r.err, "does not name '*.one.test'")) << r;
    EXPECT_TRUE(contains(r.err, "does not name 'other.test'")) << r;
}

TEST_F(CliTest, CheckRefusesACaDirThatRunWouldRefuse)
{
    std::filesystem::create_directories(dir_ / "project");
    write_file("project/main.py", "print('hi')\n");
    write_file("ca.yaml", "tls:\n  ca_dir: project\n");
    for (const auto* verb : {"check", "run"}) {
        const auto r = portico({verb, "-c", "ca.yaml"});
        EXPECT_EQ(r.exit_code, 1) << verb << r;
        EXPECT_TRUE(contains(r.err, "holds 'main.py' and no portico CA")) << verb << r;
        EXPECT_TRUE(contains(r.err, "ca.yaml:2:11: ")) << verb << r; // the ca_dir value
    }
    EXPECT_FALSE(std::filesystem::exists(dir_ / "project" / "ca-key.pem"));
}

TEST_F(CliTest, CheckFailsOnADamagedCaAsRunWould)
{
    write_file("ca.yaml", "tls:\n  ca_dir: ca\n");
    ASSERT_EQ(portico({"ca", "path", "-c", "ca.yaml"}).exit_code, 0);
    write_file("ca/ca.pem", "garbage\n");
    const auto checked = portico({"check", "-c", "ca.yaml"});
    EXPECT_EQ(checked.exit_code, 1) << checked;
    EXPECT_TRUE(contains(checked.err, "ca.pem: not a valid PEM certificate")) << checked;
    EXPECT_EQ(read_file(dir_ / "ca" / "ca.pem"), "garbage\n") << "check changes nothing";
    const auto run = portico({"run", "-c", "ca.yaml"});
    EXPECT_EQ(run.exit_code, 3) << run;
    EXPECT_TRUE(contains(run.err, "ca.pem: not a valid PEM certificate")) << run;
}

TEST_F(CliTest, PermittedNamesThatTheExistingCaLacksAreWarnedAbout)
{
    write_file("first.yaml", "tls:\n  ca_dir: ca\n");
    ASSERT_EQ(portico({"ca", "path", "-c", "first.yaml"}).exit_code, 0);
    write_file("changed.yaml",
               "tls:\n  ca_dir: ca\n  ca_permitted_names: [dev.internal, localhost]\n");
    const auto r = portico({"check", "-c", "changed.yaml"});
    EXPECT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.err, "warning: changed.yaml:3:23: tls.ca_permitted_names is "
                                "[dev.internal, localhost], but the CA in "))
        << r;
    EXPECT_TRUE(contains(r.err, "was created for [localhost, test]")) << r;
    // The same names in another order are the same constraints.
    write_file("same.yaml",
               "tls:\n  ca_dir: ca\n  ca_permitted_names: [test, localhost, test]\n");
    const auto same = portico({"check", "-c", "same.yaml"});
    EXPECT_EQ(same.exit_code, 0) << same;
    EXPECT_TRUE(same.err.empty()) << same;
    // Left at its default, the names are the file's whole; the warning points at its start.
    write_file("first.yaml", "tls:\n  ca_dir: ca2\n  ca_permitted_names: [dev.internal]\n");
    ASSERT_EQ(portico({"ca", "path", "-c", "first.yaml"}).exit_code, 0);
    write_file("default.yaml", "tls:\n  ca_dir: ca2\n");
    const auto by_default = portico({"check", "-c", "default.yaml"});
    EXPECT_TRUE(contains(by_default.err, "warning: default.yaml:1:1: tls.ca_permitted_names is "
                                         "[localhost, test]"))
        << by_default;
}

TEST_F(CliTest, RunOnBrokenFileExitsOne)
{
    write_file("bad.yaml", two_errors_yaml);
    const auto r = portico({"run", "-c", "bad.yaml"});
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_TRUE(contains(r.err, "bad.yaml:1:1: ")) << r;
    EXPECT_TRUE(r.out.empty()) << r;
}

TEST_F(CliTest, NoVerbMeansRun)
{
    write_file("portico.yaml", two_errors_yaml);
    const auto bare = portico({});
    EXPECT_EQ(bare.exit_code, 1) << bare;
    EXPECT_TRUE(contains(bare.err, "portico.yaml:1:1: ")) << bare;

    const auto with_option = portico({"-c", "portico.yaml", "--log-level", "warn"});
    EXPECT_EQ(with_option.exit_code, 1) << with_option;
    EXPECT_TRUE(contains(with_option.err, "portico.yaml:4:9: ")) << with_option;
}

TEST_F(CliTest, RunAcceptsJsonLogFormat)
{
    write_file("bad.yaml", two_errors_yaml);
    const auto r = portico({"run", "--log-format", "json", "-c", "bad.yaml"});
    EXPECT_EQ(r.exit_code, 1) << r;
    const auto lines = lines_of(r.err);
    ASSERT_EQ(lines.size(), 3U) << r;
    for (const auto& line : lines) {
        EXPECT_TRUE(line.starts_with('{') && line.ends_with('}')) << line;
    }
    EXPECT_TRUE(contains(r.err, R"("event":"config_error")")) << r;
    EXPECT_TRUE(contains(r.err, R"("line":4)")) << r;
}

TEST_F(CliTest, BrokenFilesFailWithoutCrashing)
{
    const std::vector<std::pair<std::string, std::string>> files = {
        {"binary.yaml", std::string("\x7f" "ELF\x02\x01\x01\0\0\0\xff\xfe routes:\0", 20)},
        {"empty.yaml", ""},
        {"tabs.yaml", "routes:\n\t- host: app.localhost\n\t  to: 127.0.0.1:5173\n"},
        {"unclosed.yaml", "routes: [ { host: app.localhost, to: 127.0.0.1:5173\n"},
        {"scalar.yaml", "just a string\n"},
        {"list.yaml", "- 1\n- 2\n"},
        {"anchors.yaml", "a: &a [*a, *a]\nroutes: *a\n"},
    };
    for (const auto& [name, content] : files) {
        write_file(name, content);
        for (const auto* verb : {"check", "run"}) {
            const auto r = portico({verb, "-c", name});
            EXPECT_EQ(r.signal, 0) << name << "\n" << r;
            EXPECT_EQ(r.exit_code, 1) << name << "\n" << r;
            EXPECT_TRUE(contains(r.err, name)) << name << "\n" << r;
            EXPECT_TRUE(r.out.empty()) << name << "\n" << r;
        }
    }
}

} // namespace
