#include "portico/config/config.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace cfg = portico::config;
using messages = std::vector<std::string>;
using namespace std::chrono_literals;

/// An environment with only the given variables.
cfg::environment fake_env(std::map<std::string, std::string> vars = {{"HOME", "/home/dev"}})
{
    return cfg::environment{[vars = std::move(vars)](const std::string& name) {
        const auto found = vars.find(name);
        return found == vars.end() ? std::nullopt : std::optional<std::string>(found->second);
    }};
}

messages texts(const std::vector<cfg::diagnostic>& list)
{
    messages out;
    for (const auto& d : list) {
        out.push_back(d.to_string());
    }
    return out;
}

cfg::load_result load(std::string_view yaml, const cfg::environment& env = fake_env())
{
    return cfg::parse(yaml, "portico.yaml", env);
}

messages errors(std::string_view yaml, const cfg::environment& env = fake_env())
{
    return texts(load(yaml, env).errors);
}

messages warnings(std::string_view yaml, const cfg::environment& env = fake_env())
{
    return texts(load(yaml, env).warnings);
}

/// Loads YAML that must be valid; an invalid one fails the test with its messages.
cfg::config valid(std::string_view yaml, const cfg::environment& env = fake_env(),
                  const fs::path& file = "portico.yaml")
{
    auto result = cfg::parse(yaml, file, env);
    for (const auto& e : result.errors) {
        ADD_FAILURE() << e.to_string();
    }
    return result.value.value_or(cfg::config{});
}

/// The one route of a configuration with `fields` under `- host: app.localhost`.
cfg::route one_route(const std::string& fields, const cfg::environment& env = fake_env())
{
    const auto c = valid("routes:\n  - host: app.localhost\n" + fields, env);
    return c.routes.empty() ? cfg::route{} : c.routes.front();
}

/// Errors of a configuration with one route made of `fields`.
messages route_errors(const std::string& fields, const cfg::environment& env = fake_env())
{
    return errors("routes:\n  - " + fields, env);
}

/// A directory under the system temp directory, removed with everything in it.
class temp_dir {
public:
    temp_dir()
    {
        std::random_device random;
        path_ = fs::temp_directory_path() / ("portico-config-test-" + std::to_string(::getpid()) +
                                             "-" + std::to_string(random()));
        fs::create_directories(path_);
    }
    ~temp_dir()
    {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    const fs::path& path() const { return path_; }

    fs::path write(const fs::path& relative, std::string_view content) const
    {
        const auto file = path_ / relative;
        fs::create_directories(file.parent_path());
        std::ofstream out(file, std::ios::binary);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
        return file;
    }

private:
    fs::path path_;
};

constexpr std::string_view pem_cert =
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
constexpr std::string_view pem_key =
    "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

/// Restores an environment variable of this process when the test ends.
class scoped_env {
public:
    explicit scoped_env(const char* name) : name_(name)
    {
        if (const char* value = std::getenv(name)) {
            saved_ = value;
        }
    }
    ~scoped_env()
    {
        if (saved_) {
            ::setenv(name_, saved_->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;

private:
    const char* name_;
    std::optional<std::string> saved_;
};

// ---------------------------------------------------------------- durations and sizes

TEST(ConfigDurationTest, ParsesEveryUnit)
{
    EXPECT_EQ(cfg::parse_duration("250ms"), 250ms);
    EXPECT_EQ(cfg::parse_duration("30s"), 30s);
    EXPECT_EQ(cfg::parse_duration("5m"), 5min);
    EXPECT_EQ(cfg::parse_duration("1h"), 1h);
    EXPECT_EQ(cfg::parse_duration("0"), 0ms);
    EXPECT_EQ(cfg::parse_duration("0s"), 0ms);
    EXPECT_EQ(cfg::parse_duration("0ms"), 0ms);
    EXPECT_EQ(cfg::parse_duration("9223372036854775807ms"),
              std::chrono::milliseconds(9223372036854775807));
}

TEST(ConfigDurationTest, RejectsMalformedValues)
{
    for (const auto* text : {"", "5", "-1s", "+1s", "1.5s", "5 s", " 5s", "5s ", "5S", "5sec", "s",
                             "ms", "1h30m", "1d", "0x10s", "99999999999999999999s",
                             "9223372036854775808ms", "9223372036854776s", "2562047788016h"}) {
        EXPECT_EQ(cfg::parse_duration(text), std::nullopt) << text;
    }
}

TEST(ConfigSizeTest, ParsesBinaryAndDecimalSuffixes)
{
    EXPECT_EQ(cfg::parse_size("65536"), 65536u);
    EXPECT_EQ(cfg::parse_size("0"), 0u);
    for (const auto* text : {"512k", "512K", "512KiB"}) {
        EXPECT_EQ(cfg::parse_size(text), 512u * 1024) << text;
    }
    for (const auto* text : {"3m", "3M", "3MiB"}) {
        EXPECT_EQ(cfg::parse_size(text), 3u * 1024 * 1024) << text;
    }
    for (const auto* text : {"2g", "2G", "2GiB"}) {
        EXPECT_EQ(cfg::parse_size(text), 2ull * 1024 * 1024 * 1024) << text;
    }
    EXPECT_EQ(cfg::parse_size("10KB"), 10'000u);
    EXPECT_EQ(cfg::parse_size("10MB"), 10'000'000u);
    EXPECT_EQ(cfg::parse_size("10GB"), 10'000'000'000u);
    EXPECT_EQ(cfg::parse_size("18446744073709551615"), 18446744073709551615ull);
}

TEST(ConfigSizeTest, RejectsMalformedValues)
{
    for (const auto* text : {"", "-1", "+1", "1.5M", "1 MiB", "1Mi", "1kb", "1TB", "M", "1B",
                             "18446744073709551616", "17179869184G", "18446744073709552KB"}) {
        EXPECT_EQ(cfg::parse_size(text), std::nullopt) << text;
    }
}

// ---------------------------------------------------------------- values and defaults

TEST(ConfigTest, DiagnosticToString)
{
    const auto text = [](std::string file, int line, int column, std::string message) {
        cfg::diagnostic d;
        d.where.file = std::move(file);
        d.where.line = line;
        d.where.column = column;
        d.message = std::move(message);
        return d.to_string();
    };
    EXPECT_EQ(text("portico.yaml", 14, 9, "route 3: bad"), "portico.yaml:14:9: route 3: bad");
    EXPECT_EQ(text("/tmp/x/portico.yaml", 0, 0, "not found"), "/tmp/x/portico.yaml: not found");
    EXPECT_EQ(text("", 2, 3, "bad"), "2:3: bad");
    EXPECT_EQ(text("", 0, 0, "bad"), "bad");
}

TEST(ConfigTest, NamesListenersBackendsAndRoutes)
{
    EXPECT_EQ((cfg::listener{"127.0.0.1", 7080, cfg::tls_mode::automatic, {}}).to_string(),
              "127.0.0.1:7080");
    EXPECT_EQ((cfg::listener{"::1", 7080, cfg::tls_mode::automatic, {}}).to_string(), "[::1]:7080");
    EXPECT_EQ((cfg::listener{"localhost", 0, cfg::tls_mode::automatic, {}}).to_string(),
              "localhost:0");

    cfg::backend b;
    b.host = "::1";
    b.port = 3000;
    EXPECT_EQ(b.authority(), "[::1]:3000");
    b.host = "127.0.0.1";
    EXPECT_EQ(b.authority(), "127.0.0.1:3000");
    b.scheme = cfg::backend_scheme::unix_socket;
    EXPECT_EQ(b.authority(), "localhost");

    cfg::route r;
    r.host = "app.localhost";
    EXPECT_EQ(r.name(), "app.localhost");
    r.path = "/api";
    EXPECT_EQ(r.name(), "app.localhost/api");
}

TEST(ConfigTest, DefaultsApplyWhenKeysAreAbsent)
{
    const auto c = valid("routes: []\n");
    ASSERT_EQ(c.listen.size(), 1u);
    EXPECT_EQ(c.listen[0].to_string(), "127.0.0.1:7080");
    EXPECT_EQ(c.listen[0].tls, cfg::tls_mode::automatic);
    EXPECT_FALSE(c.allow_external);
    EXPECT_FALSE(c.allow_remote_backends);
    EXPECT_EQ(c.workers, 0u);
    EXPECT_EQ(c.admin, "portico.localhost");
    EXPECT_EQ(c.tls.ca_dir, fs::path("/home/dev/.local/share/portico"));
    EXPECT_EQ(c.tls.ca_permitted_names, (messages{"localhost", "test"}));
    EXPECT_TRUE(c.tls.certificates.empty());
    EXPECT_EQ(c.timeouts.connect, 5s);
    EXPECT_EQ(c.timeouts.header, 10s);
    EXPECT_EQ(c.timeouts.idle, 60s);
    EXPECT_EQ(c.timeouts.upstream, 0s);
    EXPECT_EQ(c.timeouts.shutdown, 10s);
    EXPECT_EQ(c.limits.header_bytes, 65536u);
    EXPECT_EQ(c.limits.body_bytes, 0u);
    EXPECT_TRUE(c.routes.empty());
    EXPECT_EQ(c.source, fs::path("portico.yaml"));
}

TEST(ConfigTest, EmptySectionsMeanDefaults)
{
    const auto c = valid("listen:\ntls:\ntimeouts:\nlimits:\nroutes:\n");
    EXPECT_EQ(c.listen.size(), 1u);
    EXPECT_EQ(c.timeouts.connect, 5s);
    EXPECT_TRUE(c.routes.empty());
}

// Anchors and aliases send a file to yaml-cpp instead of libyaml; the schema reads the same.
TEST(ConfigTest, AnchorsAndAliasesAreRead)
{
    const auto c = valid(R"(routes:
  - host: a.localhost
    to: &backend 127.0.0.1:5173
    headers: &headers
      request:
        set:
          X-A: "1"
  - host: b.localhost
    to: *backend
    headers: *headers
)");
    ASSERT_EQ(c.routes.size(), 2U);
    EXPECT_EQ(c.routes[1].to.text, "127.0.0.1:5173");
    EXPECT_EQ(c.routes[1].request_headers.set,
              (std::vector<std::pair<std::string, std::string>>{{"X-A", "1"}}));
}

// Columns count UTF-8 characters whichever parser read the file: the anchor on line 3 sends
// the second text to yaml-cpp, the first is read by libyaml.
TEST(ConfigTest, PositionsAgreeBetweenParsers)
{
    const std::string tail =
        "    headers: {request: {set: {X-\u00c4: \"\u00f6\"}}}\n";
    const std::string head = "routes:\n  - host: app.localhost\n";
    const messages expected{"portico.yaml:4:31: route 1: header name 'X-\u00c4' in "
                            "'headers.request.set' is not a valid RFC 9110 token"};
    EXPECT_EQ(errors(head + "    to: 127.0.0.1:1\n" + tail), expected);
    EXPECT_EQ(errors(head + "    to: &b 127.0.0.1:1\n" + tail), expected);
}

TEST(ConfigTest, DefaultConfigIsBuiltIn)
{
    const auto c = cfg::default_config(fake_env());
    ASSERT_EQ(c.listen.size(), 1u);
    EXPECT_EQ(c.listen[0].to_string(), "127.0.0.1:7080");
    EXPECT_EQ(c.admin, "portico.localhost");
    EXPECT_TRUE(c.routes.empty());
    EXPECT_TRUE(c.source.empty());
    EXPECT_EQ(c.tls.ca_dir, fs::path("/home/dev/.local/share/portico"));

    const auto xdg = cfg::default_config(fake_env({{"XDG_DATA_HOME", "/data"}}));
    EXPECT_EQ(xdg.tls.ca_dir, fs::path("/data/portico"));
    EXPECT_TRUE(cfg::default_config(fake_env({})).tls.ca_dir.is_absolute());
}

TEST(ConfigTest, ProcessEnvironmentReadsVariablesAndFindsHome)
{
    const scoped_env saved("HOME");
    ::setenv("HOME", "/home/someone", 1);
    const auto env = cfg::environment::process();
    EXPECT_EQ(env.get("HOME"), "/home/someone");
    EXPECT_EQ(env.get("PORTICO_TEST_SURELY_UNSET_VARIABLE"), std::nullopt);
    ::unsetenv("HOME");
    // Without HOME the password database still names the home directory.
    const auto home = env.get("HOME");
    ASSERT_TRUE(home.has_value());
    EXPECT_FALSE(home->empty());
}

TEST(ConfigTest, ReadsEveryKey)
{
    const auto c = valid(R"(listen:
  - 127.0.0.1:7080
  - address: "[::1]:8443"
    tls: only
  - address: localhost:0
    tls: "off"
allow_external: false
workers: 4
tls:
  ca_dir: /var/lib/portico
  ca_permitted_names: [localhost, test]
admin: Dash.Localhost.
timeouts:
  connect: 250ms
  header: 30s
  idle: 5m
  upstream: 1h
  shutdown: 2s
limits:
  header_bytes: 32KiB
  body_bytes: 10MB
routes:
  - host: App.Localhost
    to: 127.0.0.1:5173
  - host: app.localhost
    path: /api/
    strip_prefix: true
    to: http://127.0.0.1:8000/v1/
    headers:
      request:  { set: { X-Env: dev, X-Team: web }, remove: [Cookie] }
      response: { set: { Cache-Control: no-store } }
    host_header: backend
  - host: secure.localhost
    to: https://localhost
    insecure_skip_verify: true
    redirect_https: true
  - host: db.localhost
    tls_passthrough: true
    to: 127.0.0.1:5433
  - host: "*.preview.localhost"
    to: unix:/run/preview.sock
    host_header: preview.localhost:8080
allow_remote_backends: false
)");
    ASSERT_EQ(c.listen.size(), 3u);
    EXPECT_EQ(c.listen[1].host, "::1");
    EXPECT_EQ(c.listen[1].port, 8443);
    EXPECT_EQ(c.listen[1].tls, cfg::tls_mode::only);
    EXPECT_EQ(c.listen[1].where.line, 3);
    EXPECT_EQ(c.listen[1].where.column, 14);
    EXPECT_EQ(c.listen[2].host, "localhost");
    EXPECT_EQ(c.listen[2].tls, cfg::tls_mode::off);
    EXPECT_EQ(c.workers, 4u);
    EXPECT_EQ(c.tls.ca_dir, fs::path("/var/lib/portico"));
    EXPECT_EQ(c.admin, "dash.localhost");
    EXPECT_EQ(c.timeouts.connect, 250ms);
    EXPECT_EQ(c.timeouts.header, 30s);
    EXPECT_EQ(c.timeouts.idle, 5min);
    EXPECT_EQ(c.timeouts.upstream, 1h);
    EXPECT_EQ(c.timeouts.shutdown, 2s);
    EXPECT_EQ(c.limits.header_bytes, 32u * 1024);
    EXPECT_EQ(c.limits.body_bytes, 10'000'000u);
    ASSERT_EQ(c.routes.size(), 5u);

    const auto& first = c.routes[0];
    EXPECT_EQ(first.number, 1u);
    EXPECT_EQ(first.host, "app.localhost");
    EXPECT_EQ(first.path, "/");
    EXPECT_EQ(first.to.scheme, cfg::backend_scheme::http);
    EXPECT_EQ(first.to.authority(), "127.0.0.1:5173");
    EXPECT_EQ(first.to.text, "127.0.0.1:5173");
    EXPECT_EQ(first.where.line, 23);
    EXPECT_EQ(first.where.column, 5);
    EXPECT_EQ(first.name(), "app.localhost");

    const auto& api = c.routes[1];
    EXPECT_EQ(api.path, "/api");
    EXPECT_TRUE(api.strip_prefix);
    EXPECT_EQ(api.to.base_path, "/v1");
    EXPECT_EQ(api.to.port, 8000);
    EXPECT_EQ(api.request_headers.set, (std::vector<std::pair<std::string, std::string>>{
                                           {"X-Env", "dev"}, {"X-Team", "web"}}));
    EXPECT_EQ(api.request_headers.remove, messages{"Cookie"});
    EXPECT_EQ(api.response_headers.set,
              (std::vector<std::pair<std::string, std::string>>{{"Cache-Control", "no-store"}}));
    EXPECT_TRUE(api.response_headers.remove.empty());
    EXPECT_EQ(api.host_header, cfg::host_header_policy::backend);
    EXPECT_EQ(api.name(), "app.localhost/api");

    const auto& secure = c.routes[2];
    EXPECT_EQ(secure.to.scheme, cfg::backend_scheme::https);
    EXPECT_EQ(secure.to.authority(), "localhost:443");
    EXPECT_TRUE(secure.insecure_skip_verify);
    EXPECT_TRUE(secure.redirect_https);

    const auto& db = c.routes[3];
    EXPECT_TRUE(db.tls_passthrough);
    EXPECT_EQ(db.path, "/");

    const auto& preview = c.routes[4];
    EXPECT_TRUE(preview.is_wildcard());
    EXPECT_EQ(preview.host, "*.preview.localhost");
    EXPECT_EQ(preview.to.scheme, cfg::backend_scheme::unix_socket);
    EXPECT_EQ(preview.to.socket_path, fs::path("/run/preview.sock"));
    EXPECT_EQ(preview.to.authority(), "localhost");
    EXPECT_EQ(preview.host_header, cfg::host_header_policy::literal);
    EXPECT_EQ(preview.host_header_value, "preview.localhost:8080");
}

TEST(ConfigTest, SpecExampleIsValid)
{
    const temp_dir dir;
    dir.write("certs/legacy.pem", pem_cert);
    dir.write("certs/legacy-key.pem", pem_key);
    const auto file = dir.write("portico.yaml", R"(listen:
  - 127.0.0.1:7080
  - address: 127.0.0.1:443
    tls: only
allow_external: false
workers: 0
tls:
  ca_dir: ~/.local/share/portico
  ca_permitted_names: [localhost, test]
  certificates:
    - hosts: [legacy.test]
      cert: certs/legacy.pem
      key: certs/legacy-key.pem
admin: portico.localhost
timeouts:
  connect: 5s
  header: 10s
  idle: 60s
  upstream: 0s
  shutdown: 10s
limits:
  header_bytes: 65536
  body_bytes: 0
routes:
  - host: app.localhost
    to: 127.0.0.1:5173
  - host: app.localhost
    path: /api
    strip_prefix: true
    to: 127.0.0.1:8000
    headers:
      request:  { set: { X-Env: dev }, remove: [Cookie] }
      response: { set: { Cache-Control: no-store } }
    host_header: preserve
  - host: secure.localhost
    to: https://127.0.0.1:3443
    insecure_skip_verify: true
    redirect_https: true
  - host: db.localhost
    tls_passthrough: true
    to: 127.0.0.1:5433
allow_remote_backends: false
)");
    const auto result = cfg::load_file(file, fake_env());
    EXPECT_EQ(texts(result.errors), messages{});
    EXPECT_EQ(texts(result.warnings), messages{});
    ASSERT_TRUE(result.value.has_value());
    const auto& c = *result.value;
    EXPECT_EQ(c.routes.size(), 4u);
    EXPECT_EQ(c.source, file);
    ASSERT_EQ(c.tls.certificates.size(), 1u);
    EXPECT_EQ(c.tls.certificates[0].hosts, messages{"legacy.test"});
    EXPECT_EQ(c.tls.certificates[0].cert, dir.path() / "certs/legacy.pem");
    EXPECT_EQ(c.tls.certificates[0].key, dir.path() / "certs/legacy-key.pem");
    EXPECT_EQ(c.referenced_files, (std::vector<fs::path>{dir.path() / "certs/legacy.pem",
                                                         dir.path() / "certs/legacy-key.pem"}));
}

TEST(ConfigTest, SpecMessageExample)
{
    // SPEC.md quotes this message for a bad `to` on line 14, column 9 of route 3.
    EXPECT_EQ(errors(R"(# portico.yaml
listen:
  - 127.0.0.1:7080

routes:
  - host: app.localhost
    to: 127.0.0.1:5173

  - host: api.localhost
    to: 127.0.0.1:8000

  - host: web.localhost
    path: /static
    to: 5173
)"),
              messages{"portico.yaml:14:9: route 3: 'to' must be host:port, http(s)://host:port or "
                       "unix:/path"});
}

// ---------------------------------------------------------------- keys and types

TEST(ConfigTest, UnknownKeyPointsAtKey)
{
    EXPECT_EQ(errors("listen: 127.0.0.1:7080\nrotues: []\n"),
              messages{"portico.yaml:2:1: unknown key 'rotues'; did you mean 'routes'?"});
}

TEST(ConfigTest, UnknownKeySuggestsAcrossCase)
{
    EXPECT_EQ(errors("Admin: a.localhost\n"),
              messages{"portico.yaml:1:1: unknown key 'Admin'; did you mean 'admin'?"});
}

TEST(ConfigTest, UnknownKeyWithoutSuggestionListsKnownKeys)
{
    EXPECT_EQ(errors("timeouts:\n  read: 1s\n"),
              messages{"portico.yaml:2:3: unknown key 'read' in 'timeouts'; expected one of "
                       "connect, header, idle, upstream, shutdown"});
}

TEST(ConfigTest, UnknownKeysInEverySection)
{
    EXPECT_EQ(errors(R"(listen:
  - adress: 127.0.0.1:7080
tls:
  ca_dri: /ca
limits:
  body_byte: 1
)"),
              (messages{
                  "portico.yaml:2:5: listen 1: unknown key 'adress'; did you mean 'address'?",
                  "portico.yaml:2:5: listen 1: 'address' is required, e.g. address: 127.0.0.1:7080",
                  "portico.yaml:4:3: unknown key 'ca_dri' in 'tls'; did you mean 'ca_dir'?",
                  "portico.yaml:6:3: unknown key 'body_byte' in 'limits'; did you mean "
                  "'body_bytes'?",
              }));
    EXPECT_EQ(
        route_errors("hots: app.localhost\n    to: 127.0.0.1:3000\n"),
        (messages{"portico.yaml:2:5: route 1: unknown key 'hots'; did you mean 'host'?",
                  "portico.yaml:2:5: route 1: 'host' is required, e.g. host: app.localhost"}));
}

TEST(ConfigTest, DuplicateKeyPointsAtSecondOccurrence)
{
    EXPECT_EQ(errors("listen: 127.0.0.1:7080\nworkers: 1\nlisten: 127.0.0.1:7081\n"),
              messages{"portico.yaml:3:1: duplicate key 'listen' (first at line 1)"});
    EXPECT_EQ(
        errors("timeouts:\n  connect: 1s\n  connect: 2s\n"),
        messages{"portico.yaml:3:3: duplicate key 'connect' in 'timeouts' (first at line 2)"});
    EXPECT_EQ(route_errors("host: a.localhost\n    to: 127.0.0.1:1\n    to: 127.0.0.1:2\n"),
              messages{"portico.yaml:4:5: route 1: duplicate key 'to' (first at line 3)"});
}

TEST(ConfigTest, KeyMustBeAName)
{
    EXPECT_EQ(errors("? [a]\n: 1\n"),
              messages{"portico.yaml:1:3: a key must be a name, not a list"});
}

TEST(ConfigTest, WrongTypesSayWhatWasExpected)
{
    EXPECT_EQ(errors("timeouts: [1s]\n"),
              messages{"portico.yaml:1:11: 'timeouts' must be a mapping, not a list"});
    EXPECT_EQ(errors("routes: {host: a}\n"),
              messages{"portico.yaml:1:9: 'routes' must be a list of routes, not a mapping"});
    EXPECT_EQ(errors("routes:\n  - app.localhost\n"),
              messages{"portico.yaml:2:5: route 1: must be a mapping with 'host' and 'to', not a "
                       "value"});
    EXPECT_EQ(errors("routes:\n  -\n"),
              messages{"portico.yaml:2:3: route 1: must be a mapping with 'host' and 'to', not "
                       "empty"});
    EXPECT_EQ(errors("workers: [1]\n"),
              messages{"portico.yaml:1:10: 'workers' must be an integer from 0 to 256 (0 = one "
                       "per core), not a list"});
    EXPECT_EQ(errors("admin:\n"),
              messages{"portico.yaml:1:1: 'admin' must be a host name such as portico.localhost, "
                       "not empty"});
    EXPECT_EQ(errors("tls: yes\n"),
              messages{"portico.yaml:1:6: 'tls' must be a mapping with ca_dir, ca_permitted_names "
                       "and certificates, not a value"});
    EXPECT_EQ(errors("listen: {address: 127.0.0.1:7080}\n"),
              messages{"portico.yaml:1:9: 'listen' must be a list of addresses such as "
                       "127.0.0.1:7080, not a mapping"});
}

TEST(ConfigTest, BooleansAreTrueOrFalseOnly)
{
    EXPECT_TRUE(valid("allow_external: true\nallow_remote_backends: true\n").allow_external);
    for (const auto* word : {"yes", "no", "on", "off", "1", "True", "FALSE", "y"}) {
        EXPECT_EQ(errors(std::string("allow_external: ") + word + "\n"),
                  messages{"portico.yaml:1:17: 'allow_external' must be true or false"})
            << word;
    }
    EXPECT_EQ(errors("allow_remote_backends: yes\n"),
              messages{"portico.yaml:1:24: 'allow_remote_backends' must be true or false"});
    EXPECT_EQ(route_errors("host: a.localhost\n    to: 127.0.0.1:1\n    strip_prefix: yes\n"),
              messages{"portico.yaml:4:19: route 1: 'strip_prefix' must be true or false"});
}

TEST(ConfigTest, WorkersRange)
{
    EXPECT_EQ(valid("workers: 0\n").workers, 0u);
    EXPECT_EQ(valid("workers: 256\n").workers, 256u);
    for (const auto* value : {"257", "-1", "four", "1.5", "0x10", "99999999999999999999"}) {
        EXPECT_EQ(errors(std::string("workers: ") + value + "\n"),
                  messages{"portico.yaml:1:10: 'workers' must be an integer from 0 to 256 (0 = "
                           "one per core)"})
            << value;
    }
}

TEST(ConfigTest, MultipleErrorsAreReportedInFileOrder)
{
    EXPECT_EQ(errors(R"(routes:
  - host: app.localhost
    to: nowhere
  - host: "a..localhost"
    to: 127.0.0.1:1
workers: 999
timeouts:
  connect: 5
admin: "*.x"
)"),
              (messages{
                  "portico.yaml:3:9: route 1: 'to' must be host:port, http(s)://host:port or "
                  "unix:/path",
                  "portico.yaml:4:11: route 2: host 'a..localhost' is not valid: it has an empty "
                  "label",
                  "portico.yaml:6:10: 'workers' must be an integer from 0 to 256 (0 = one per "
                  "core)",
                  "portico.yaml:8:12: 'timeouts.connect' must be a duration such as 250ms, 30s, 5m "
                  "or 1h",
                  "portico.yaml:9:8: admin host '*.x' is not valid: a wildcard is not allowed here",
              }));
}

TEST(ConfigTest, ColumnsCountCharactersNotBytes)
{
    EXPECT_EQ(errors("{admin: \"\xC3\xBC\", workers: x}\n"),
              (messages{"portico.yaml:1:9: admin host '\xC3\xBC' is not valid: non-ASCII "
                        "characters are not allowed; use the punycode (xn--) form",
                        "portico.yaml:1:23: 'workers' must be an integer from 0 to 256 (0 = one "
                        "per core)"}));
}

TEST(ConfigTest, AdminHost)
{
    EXPECT_EQ(valid("admin: Portico.Localhost.\n").admin, "portico.localhost");
    EXPECT_EQ(errors("admin: \"portico.localhost:7080\"\n"),
              messages{"portico.yaml:1:8: admin host 'portico.localhost:7080' is not valid: a port "
                       "is not allowed here"});
    EXPECT_EQ(errors("routes:\n  - host: Portico.localhost\n    to: 127.0.0.1:1\n"),
              messages{"portico.yaml:2:11: route 1: host 'portico.localhost' is the admin host; "
                       "choose another host or change 'admin'"});
    // The admin host wins over wildcard routes, so those are fine, and so is moving the admin.
    EXPECT_EQ(valid("routes:\n  - host: \"*.localhost\"\n    to: 127.0.0.1:1\n").routes.size(), 1u);
    EXPECT_EQ(
        valid("admin: dash.localhost\nroutes:\n  - host: portico.localhost\n    to: 127.0.0.1:1\n")
            .routes.size(),
        1u);
}

// ---------------------------------------------------------------- listen

TEST(ConfigListenTest, AcceptsASingleAddress)
{
    const auto c = valid("listen: 127.0.0.1:9000\n");
    ASSERT_EQ(c.listen.size(), 1u);
    EXPECT_EQ(c.listen[0].to_string(), "127.0.0.1:9000");
    EXPECT_EQ(c.listen[0].where.line, 1);
    EXPECT_EQ(c.listen[0].where.column, 9);
}

TEST(ConfigListenTest, AcceptsLoopbackFormsAndPortZero)
{
    const auto c = valid(R"(listen:
  - "[::1]:7080"
  - LOCALHOST:7081
  - 127.0.0.1:0
  - 127.0.0.1:0
  - address: 127.255.0.1:65535
    tls: auto
)");
    ASSERT_EQ(c.listen.size(), 5u);
    EXPECT_EQ(c.listen[0].host, "::1");
    EXPECT_EQ(c.listen[0].to_string(), "[::1]:7080");
    EXPECT_EQ(c.listen[1].host, "localhost");
    EXPECT_EQ(c.listen[2].port, 0);
    EXPECT_EQ(c.listen[4].port, 65535);
    EXPECT_EQ(c.listen[4].tls, cfg::tls_mode::automatic);
    EXPECT_EQ(valid("listen:\n  - address: 127.0.0.1:7080\n    tls: off\n").listen[0].tls,
              cfg::tls_mode::off);
}

TEST(ConfigListenTest, TlsModeMustBeKnown)
{
    EXPECT_EQ(errors("listen:\n  - address: 127.0.0.1:7080\n    tls: on\n"),
              messages{"portico.yaml:3:10: listen 1: 'tls' must be auto, only or off"});
}

TEST(ConfigListenTest, AddressErrors)
{
    const auto one = [](const std::string& address) { return errors("listen: " + address + "\n"); };
    EXPECT_EQ(one("127.0.0.1"),
              messages{"portico.yaml:1:9: listen 1: address '127.0.0.1' must be host:port, e.g. "
                       "127.0.0.1:7080, [::1]:7080 or localhost:7080"});
    EXPECT_EQ(one("\":7080\""),
              messages{"portico.yaml:1:9: listen 1: address ':7080' must be host:port, e.g. "
                       "127.0.0.1:7080, [::1]:7080 or localhost:7080"});
    EXPECT_EQ(one("127.0.0.1:http"),
              messages{"portico.yaml:1:9: listen 1: address '127.0.0.1:http' must be host:port, "
                       "e.g. 127.0.0.1:7080, [::1]:7080 or localhost:7080"});
    EXPECT_EQ(one("127.0.0.1:70000"),
              messages{"portico.yaml:1:9: listen 1: address '127.0.0.1:70000': port must be "
                       "0..65535"});
    EXPECT_EQ(one("\"::1:7080\""),
              messages{"portico.yaml:1:9: listen 1: address '::1:7080' needs brackets around an "
                       "IPv6 address, e.g. [::1]:7080"});
    EXPECT_EQ(one("\"[::g]:7080\""),
              messages{"portico.yaml:1:9: listen 1: address '[::g]:7080': '::g' is not a valid "
                       "IPv6 address"});
    EXPECT_EQ(one("app.localhost:7080"),
              messages{"portico.yaml:1:9: listen 1: address 'app.localhost:7080': host must be an "
                       "IP address or localhost"});
    EXPECT_EQ(errors("listen: []\n"),
              messages{"portico.yaml:1:9: 'listen' needs at least one address such as "
                       "127.0.0.1:7080"});
    EXPECT_EQ(errors("listen:\n  - tls: only\n"),
              messages{"portico.yaml:2:5: listen 1: 'address' is required, e.g. address: "
                       "127.0.0.1:7080"});
    EXPECT_EQ(errors("listen:\n  - [127.0.0.1:7080]\n"),
              messages{"portico.yaml:2:5: listen 1: must be an address such as 127.0.0.1:7080 or "
                       "a mapping with 'address' and 'tls', not a list"});
}

TEST(ConfigListenTest, NonLoopbackNeedsAllowExternal)
{
    EXPECT_EQ(errors("listen:\n  - 127.0.0.1:7080\n  - 0.0.0.0:7080\n  - \"[::]:7080\"\n"),
              (messages{"portico.yaml:3:5: listen 2: address '0.0.0.0:7080' is not a loopback "
                        "address; set allow_external: true to listen on other interfaces",
                        "portico.yaml:4:5: listen 3: address '[::]:7080' is not a loopback "
                        "address; set allow_external: true to listen on other interfaces"}));
    // allow_external may come after listen in the file.
    const auto c = valid("listen: [0.0.0.0:7080, \"[::]:7081\"]\nallow_external: true\n");
    EXPECT_EQ(c.listen[0].host, "0.0.0.0");
    EXPECT_EQ(c.listen[1].host, "::");
    EXPECT_TRUE(c.allow_external);
    EXPECT_EQ(valid("listen: 127.3.2.1:7080\n").listen[0].host, "127.3.2.1");
}

TEST(ConfigListenTest, DuplicateAddressesAreErrors)
{
    EXPECT_EQ(errors("listen:\n  - 127.0.0.1:7080\n  - address: 127.0.0.1:7080\n"),
              messages{"portico.yaml:3:14: listen 2: address '127.0.0.1:7080' is listed twice "
                       "(first at line 2)"});
    EXPECT_EQ(errors("listen:\n  - \"[::1]:7080\"\n  - \"[0:0::1]:7080\"\n"),
              messages{"portico.yaml:3:5: listen 2: address '[0:0::1]:7080' is listed twice "
                       "(first at line 2)"});
    EXPECT_EQ(errors("listen:\n  - localhost:7080\n  - \"[::1]:7080\"\n"),
              messages{"portico.yaml:3:5: listen 2: address '[::1]:7080' overlaps "
                       "'localhost:7080' at line 2 (localhost binds both 127.0.0.1 and ::1)"});
    EXPECT_EQ(errors("listen:\n  - 127.0.0.1:7080\n  - localhost:7080\n"),
              messages{"portico.yaml:3:5: listen 2: address 'localhost:7080' overlaps "
                       "'127.0.0.1:7080' at line 2 (localhost binds both 127.0.0.1 and ::1)"});
    EXPECT_EQ(valid("listen:\n  - 127.0.0.1:7080\n  - 127.0.0.1:7081\n  - \"[::1]:7080\"\n")
                  .listen.size(),
              3u);
}

TEST(ConfigTest, DeepNestingIsRefusedAtOnce)
{
    // libyaml's work per token grows with the nesting: 100,000 levels took a minute, and
    // this file would take four before it was refused at the 64th.
    const auto text = "routes: " + std::string(200000, '[') + std::string(200000, ']') + "\n";
    EXPECT_EQ(errors(text), messages{"portico.yaml:1:72: lists and mappings are nested more "
                                     "than 64 levels deep here; no configuration needs more "
                                     "than 6"});
}

TEST(ConfigListenTest, RouteToPorticosOwnListenerIsAnError)
{
    EXPECT_EQ(errors("listen: [localhost:7080]\nroutes:\n  - host: app.localhost\n"
                     "    to: 127.0.0.1:7080\n"),
              messages{"portico.yaml:4:9: route 1: 'to' 127.0.0.1:7080 is portico's own listener "
                       "'localhost:7080' (line 1): each request would come back to this route "
                       "without end; point it at your dev server's port"});
    EXPECT_EQ(errors("routes:\n  - host: app.localhost\n    to: http://localhost:7080\n"),
              messages{"portico.yaml:3:9: route 1: 'to' http://localhost:7080 is portico's own "
                       "listener '127.0.0.1:7080' (the default): each request would come back "
                       "to this route without end; point it at your dev server's port"});
    EXPECT_EQ(errors("listen: [0.0.0.0:8080]\nallow_external: true\nroutes:\n"
                     "  - host: db.localhost\n    tls_passthrough: true\n    to: 127.0.0.1:8080\n")
                  .size(),
              1u);
    // A base path that the route's path covers makes the path grow at every hop; a Host
    // set to the route's own name comes back as the kept one does.
    for (const auto* route : {"  - host: a.localhost\n    to: http://127.0.0.1:7080/api\n",
                              "  - host: a.localhost\n    path: /api\n"
                              "    to: http://127.0.0.1:7080/api/v1\n",
                              "  - host: a.localhost\n    to: 127.0.0.1:7080\n"
                              "    host_header: A.localhost\n",
                              "  - host: \"*.a.localhost\"\n    to: 127.0.0.1:7080\n"
                              "    host_header: x.a.localhost:7080\n"}) {
        EXPECT_EQ(errors(std::string("routes:\n") + route).size(), 1u) << route;
    }
    // Another port, or a request that comes back as another one (an alias), is no loop.
    EXPECT_EQ(valid("routes:\n  - host: app.localhost\n    to: 127.0.0.1:7081\n").routes.size(), 1u);
    for (const auto* route : {"  - host: alias.localhost\n    to: 127.0.0.1:7080\n"
                              "    host_header: app.localhost\n",
                              "  - host: alias.localhost\n    to: 127.0.0.1:7080\n"
                              "    host_header: backend\n",
                              "  - host: app.localhost\n    path: /v2\n    strip_prefix: true\n"
                              "    to: 127.0.0.1:7080\n",
                              "  - host: app.localhost\n    path: /old\n"
                              "    to: http://127.0.0.1:7080/new\n"}) {
        EXPECT_EQ(valid(std::string("routes:\n") + route).routes.size(), 1u) << route;
    }
}

// ---------------------------------------------------------------- timeouts and limits

TEST(ConfigTest, TimeoutErrors)
{
    EXPECT_EQ(errors("timeouts:\n  connect: 5\n  idle: -1s\n  shutdown: 1.5s\n  upstream: 0\n"),
              (messages{"portico.yaml:2:12: 'timeouts.connect' must be a duration such as 250ms, "
                        "30s, 5m or 1h",
                        "portico.yaml:3:9: 'timeouts.idle' must be a duration such as 250ms, 30s, "
                        "5m or 1h",
                        "portico.yaml:4:13: 'timeouts.shutdown' must be a duration such as 250ms, "
                        "30s, 5m or 1h"}));
    for (const std::string key : {"connect", "header", "idle", "shutdown"}) {
        EXPECT_EQ(errors("timeouts:\n  " + key + ": 0s\n"),
                  messages{"portico.yaml:2:" + std::to_string(key.size() + 5) + ": 'timeouts." +
                           key + "' must be greater than 0"});
    }
    EXPECT_EQ(valid("timeouts:\n  upstream: 0\n").timeouts.upstream, 0ms);
}

TEST(ConfigTest, TimeoutsThatWouldOverflowADeadlineAreRefused)
{
    // 2562048h is past what a nanosecond deadline holds: it would time out at once.
    EXPECT_EQ(errors("timeouts:\n  upstream: 2562048h\n  header: 9223372036854775807ms\n"),
              (messages{"portico.yaml:2:13: 'timeouts.upstream' must be at most 8760h (a year); "
                        "0 means no limit",
                        "portico.yaml:3:11: 'timeouts.header' must be at most 8760h (a year)"}));
    EXPECT_EQ(valid("timeouts:\n  idle: 8760h\n").timeouts.idle, 8760h);
    // Past what the parser's milliseconds hold: still too long, not malformed.
    EXPECT_EQ(errors("timeouts:\n  idle: 99999999999999999h\n"),
              messages{"portico.yaml:2:9: 'timeouts.idle' must be at most 8760h (a year)"});
}

TEST(ConfigTest, LimitErrors)
{
    const auto c = valid("limits:\n  header_bytes: 1024\n  body_bytes: 1GiB\n");
    EXPECT_EQ(c.limits.header_bytes, 1024u);
    EXPECT_EQ(c.limits.body_bytes, 1024u * 1024 * 1024);
    EXPECT_EQ(valid("limits:\n  header_bytes: 16MiB\n").limits.header_bytes, 16u * 1024 * 1024);
    for (const auto* size : {"1023", "16777217", "17MiB", "0"}) {
        EXPECT_EQ(errors(std::string("limits:\n  header_bytes: ") + size + "\n"),
                  messages{"portico.yaml:2:17: 'limits.header_bytes' must be between 1024 bytes "
                           "and 16 MiB"})
            << size;
    }
    EXPECT_EQ(errors("limits:\n  body_bytes: lots\n"),
              messages{"portico.yaml:2:15: 'limits.body_bytes' must be a size in bytes such as "
                       "65536, 512k, 64KiB or 10MB"});
    EXPECT_EQ(errors("limits:\n  body_bytes: -1\n"),
              messages{"portico.yaml:2:15: 'limits.body_bytes' must be a size in bytes such as "
                       "65536, 512k, 64KiB or 10MB"});
}

// ---------------------------------------------------------------- routes

TEST(ConfigRouteTest, HostsAreNormalised)
{
    EXPECT_EQ(one_route("    to: 127.0.0.1:1\n").host, "app.localhost");
    const auto c = valid(R"(routes:
  - host: App.LocalHost.
    to: 127.0.0.1:1
  - host: "*.Preview.localhost"
    to: 127.0.0.1:1
  - host: "*.localhost"
    to: 127.0.0.1:1
  - host: 127.0.0.1
    to: 127.0.0.1:1
  - host: "[::1]"
    to: 127.0.0.1:1
)");
    ASSERT_EQ(c.routes.size(), 5u);
    EXPECT_EQ(c.routes[0].host, "app.localhost");
    EXPECT_EQ(c.routes[1].host, "*.preview.localhost");
    EXPECT_TRUE(c.routes[1].is_wildcard());
    EXPECT_EQ(c.routes[2].host, "*.localhost");
    EXPECT_EQ(c.routes[3].host, "127.0.0.1");
    EXPECT_EQ(c.routes[4].host, "::1");
}

TEST(ConfigRouteTest, InvalidHostsSayWhy)
{
    const auto host_error = [](const std::string& host) {
        return route_errors("host: \"" + host + "\"\n    to: 127.0.0.1:1\n");
    };
    const auto expect = [](const std::string& host, const std::string& why) {
        return messages{"portico.yaml:2:11: route 1: host '" + host + "' is not valid: " + why};
    };
    const std::string wildcard =
        "a wildcard must be the whole first label followed by a domain, e.g. *.app.localhost";
    EXPECT_EQ(host_error("*"), expect("*", wildcard));
    EXPECT_EQ(host_error("*."), expect("*.", wildcard));
    EXPECT_EQ(host_error("a.*.b"), expect("a.*.b", wildcard));
    EXPECT_EQ(host_error("*foo.x"), expect("*foo.x", wildcard));
    EXPECT_EQ(host_error("*.*.x"), expect("*.*.x", wildcard));
    EXPECT_EQ(host_error(""), expect("", "it is empty"));
    EXPECT_EQ(host_error("a..b"), expect("a..b", "it has an empty label"));
    EXPECT_EQ(host_error(".a"), expect(".a", "it has an empty label"));
    EXPECT_EQ(host_error("my_app.localhost"),
              expect("my_app.localhost", "'_' is not allowed; use letters, digits, '-' and '.'"));
    EXPECT_EQ(host_error("app.localhost:8080"),
              expect("app.localhost:8080", "a port is not allowed here"));
    EXPECT_EQ(host_error("http://app.localhost"),
              expect("http://app.localhost",
                     "write the host name alone, without a scheme such as http://"));
    EXPECT_EQ(host_error("-app.localhost"),
              expect("-app.localhost", "a label cannot start or end with '-'"));
    EXPECT_EQ(host_error("1.2.3"), expect("1.2.3", "the last label cannot be all digits"));
    EXPECT_EQ(host_error("::g"), expect("::g", "it is not a valid IPv6 address"));
    const std::string long_label(64, 'a');
    EXPECT_EQ(host_error(long_label + ".localhost"),
              expect(long_label + ".localhost",
                     "label '" + long_label + "' is longer than 63 characters"));
    std::string long_name;
    while (long_name.size() < 250) {
        long_name += "abcdefghi.";
    }
    long_name += "localhost";
    EXPECT_EQ(host_error(long_name), expect(long_name, "it is longer than 253 characters"));
    EXPECT_TRUE(host_error(std::string(63, 'a') + ".localhost").empty());
}

TEST(ConfigRouteTest, UnquotedWildcardGetsAHint)
{
    EXPECT_EQ(errors("routes:\n  - host: *.app.localhost\n    to: 127.0.0.1:1\n"),
              messages{"portico.yaml:2:11: invalid YAML: '*' starts an alias here; quote wildcard "
                       "hosts, e.g. \"*.app.localhost\""});
}

TEST(ConfigRouteTest, PathsAreNormalised)
{
    EXPECT_EQ(one_route("    path: /api/\n    to: 127.0.0.1:1\n").path, "/api");
    EXPECT_EQ(one_route("    path: /\n    to: 127.0.0.1:1\n").path, "/");
    EXPECT_EQ(one_route("    path: /a/./b/../c\n    to: 127.0.0.1:1\n").path, "/a/c");
    EXPECT_EQ(one_route("    path: /%7euser\n    to: 127.0.0.1:1\n").path, "/~user");
}

TEST(ConfigRouteTest, PathErrors)
{
    const auto path_error = [](const std::string& path) {
        return route_errors("host: app.localhost\n    path: \"" + path +
                            "\"\n    to: 127.0.0.1:1\n");
    };
    EXPECT_EQ(path_error("api"),
              messages{"portico.yaml:3:11: route 1: 'path' must start with '/', e.g. /api"});
    EXPECT_EQ(path_error("/api?x=1"),
              messages{"portico.yaml:3:11: route 1: 'path' must not contain a query or fragment "
                       "('?', '#')"});
    const messages invalid{"portico.yaml:3:11: route 1: 'path' must be a URL path such as /api (no "
                           "spaces, control characters or malformed %-escapes)"};
    EXPECT_EQ(path_error("/a b"), invalid);
    EXPECT_EQ(path_error("/a%zz"), invalid);
}

TEST(ConfigRouteTest, RefusedPathIsNotAlsoCalledADuplicate)
{
    EXPECT_EQ(errors("routes:\n  - host: z.localhost\n    to: 127.0.0.1:1\n"
                     "  - host: z.localhost\n    path: api\n    to: 127.0.0.1:2\n"),
              messages{"portico.yaml:5:11: route 2: 'path' must start with '/', e.g. /api"});
}

TEST(ConfigRouteTest, BackendForms)
{
    const auto to = [](const std::string& target) {
        return one_route("    to: \"" + target + "\"\n").to;
    };
    auto b = to("127.0.0.1:3000");
    EXPECT_EQ(b.scheme, cfg::backend_scheme::http);
    EXPECT_EQ(b.host, "127.0.0.1");
    EXPECT_EQ(b.port, 3000);
    EXPECT_EQ(b.base_path, "");
    EXPECT_EQ(b.text, "127.0.0.1:3000");
    b = to("[::1]:3000");
    EXPECT_EQ(b.host, "::1");
    EXPECT_EQ(b.authority(), "[::1]:3000");
    b = to("LocalHost:5173");
    EXPECT_EQ(b.host, "localhost");
    b = to("http://127.0.0.1:8000/v1/");
    EXPECT_EQ(b.scheme, cfg::backend_scheme::http);
    EXPECT_EQ(b.base_path, "/v1");
    EXPECT_EQ(to("http://127.0.0.1:8000/").base_path, "");
    EXPECT_EQ(to("http://127.0.0.1").port, 80);
    b = to("https://localhost");
    EXPECT_EQ(b.scheme, cfg::backend_scheme::https);
    EXPECT_EQ(b.port, 443);
    // Schemes are case-insensitive (RFC 3986 §3.1).
    EXPECT_EQ(to("HTTPS://localhost:3443").scheme, cfg::backend_scheme::https);
    EXPECT_EQ(to("Http://127.0.0.1:80").port, 80);
    EXPECT_EQ(to("UNIX:/run/app.sock").scheme, cfg::backend_scheme::unix_socket);
    b = to("https://[::1]:3443/base/./x");
    EXPECT_EQ(b.host, "::1");
    EXPECT_EQ(b.port, 3443);
    EXPECT_EQ(b.base_path, "/base/x");
    b = to("unix:/run/app.sock");
    EXPECT_EQ(b.scheme, cfg::backend_scheme::unix_socket);
    EXPECT_EQ(b.socket_path, fs::path("/run/app.sock"));
    EXPECT_EQ(b.port, 0);
    EXPECT_EQ(b.host, "");
}

TEST(ConfigRouteTest, BackendErrors)
{
    const auto to_error = [](const std::string& target) {
        return route_errors("host: app.localhost\n    to: \"" + target + "\"\n");
    };
    const auto expect = [](const std::string& message) {
        return messages{"portico.yaml:3:9: route 1: " + message};
    };
    const std::string generic = "'to' must be host:port, http(s)://host:port or unix:/path";
    for (const auto* target :
         {"nowhere", "127.0.0.1", "5173", ":5173", "127.0.0.1:3000/x", "127.0.0.1:http",
          "http://user@127.0.0.1:80", "unix:", "http://", "[::1]x"}) {
        EXPECT_EQ(to_error(target), expect(generic)) << target;
    }
    EXPECT_EQ(to_error("ftp://127.0.0.1:21"),
              expect("'to' scheme must be http://, https:// or unix:"));
    EXPECT_EQ(to_error("127.0.0.1:0"), expect("'to' port must be between 1 and 65535"));
    EXPECT_EQ(to_error("http://127.0.0.1:65536"), expect("'to' port must be between 1 and 65535"));
    EXPECT_EQ(to_error("::1:3000"),
              expect("'to' needs brackets around an IPv6 address, e.g. [::1]:8000"));
    EXPECT_EQ(to_error("[::g]:3000"), expect("'to' '[::g]' is not a valid IPv6 address"));
    EXPECT_EQ(to_error("my_app:3000"),
              expect("'to' host 'my_app' is not valid: '_' is not allowed; use letters, digits, "
                     "'-' and '.'"));
    EXPECT_EQ(to_error("http://127.0.0.1:8000/a b"),
              expect("'to' path '/a b' is not a valid URL path"));
    EXPECT_EQ(to_error("http://127.0.0.1:8000/?q=1"),
              expect("'to' may have a path but no query or fragment"));
    EXPECT_EQ(errors("routes:\n  - host: app.localhost\n"),
              messages{"portico.yaml:2:5: route 1: 'to' is required (host:port, "
                       "http(s)://host:port or unix:/path)"});
}

TEST(ConfigRouteTest, RemoteBackendsNeedAllowRemoteBackends)
{
    const auto expect = [](const std::string& target) {
        return messages{"portico.yaml:3:9: route 1: backend '" + target +
                        "' is not on this machine (127.0.0.0/8, ::1, localhost or unix:); set "
                        "allow_remote_backends: true to allow it"};
    };
    for (const auto* target :
         {"192.168.1.10:3000", "https://example.com", "[2001:db8::1]:80", "app.localhost:3000"}) {
        EXPECT_EQ(route_errors(std::string("host: app.localhost\n    to: \"") + target + "\"\n"),
                  expect(target));
    }
    EXPECT_EQ(one_route("    to: 127.8.9.10:80\n").to.host, "127.8.9.10");
    const auto c = valid("routes:\n  - host: app.localhost\n    to: https://example.com/api\n"
                         "allow_remote_backends: true\n");
    ASSERT_EQ(c.routes.size(), 1u);
    EXPECT_EQ(c.routes[0].to.host, "example.com");
    EXPECT_EQ(c.routes[0].to.base_path, "/api");
}

TEST(ConfigRouteTest, UnixSocketPathsExpand)
{
    const auto env = fake_env({{"HOME", "/home/dev"}, {"RUN", "/run/user/1000"}});
    const auto socket = [&](const std::string& target) {
        const auto c = valid("routes:\n  - host: app.localhost\n    to: unix:" + target + "\n", env,
                             "/srv/project/portico.yaml");
        return c.routes.empty() ? fs::path() : c.routes[0].to.socket_path;
    };
    EXPECT_EQ(socket("~/run/app.sock"), fs::path("/home/dev/run/app.sock"));
    EXPECT_EQ(socket("${RUN}/app.sock"), fs::path("/run/user/1000/app.sock"));
    EXPECT_EQ(socket("run/app.sock"), fs::path("/srv/project/run/app.sock"));
    EXPECT_EQ(socket("../app.sock"), fs::path("/srv/app.sock"));
    EXPECT_EQ(route_errors("host: app.localhost\n    to: unix:${NOPE}/x.sock\n", env),
              messages{"portico.yaml:3:9: route 1: 'to': environment variable 'NOPE' is not set"});
    const std::string deep(120, 'd');
    EXPECT_EQ(route_errors("host: app.localhost\n    to: unix:/" + deep + "\n"),
              messages{"portico.yaml:3:9: route 1: 'to' socket path '/" + deep +
                       "' is too long (121 bytes; at most 107)"});
}

TEST(ConfigRouteTest, HostHeader)
{
    EXPECT_EQ(one_route("    to: 127.0.0.1:1\n").host_header, cfg::host_header_policy::preserve);
    EXPECT_EQ(one_route("    to: 127.0.0.1:1\n    host_header: preserve\n").host_header,
              cfg::host_header_policy::preserve);
    EXPECT_EQ(one_route("    to: 127.0.0.1:1\n    host_header: backend\n").host_header,
              cfg::host_header_policy::backend);
    // The words in any case: "Preserve" is no host anyone means.
    EXPECT_EQ(one_route("    to: 127.0.0.1:1\n    host_header: Preserve\n").host_header,
              cfg::host_header_policy::preserve);
    EXPECT_EQ(one_route("    to: 127.0.0.1:1\n    host_header: BACKEND\n").host_header,
              cfg::host_header_policy::backend);
    const auto literal = one_route("    to: 127.0.0.1:1\n    host_header: api.localhost:8080\n");
    EXPECT_EQ(literal.host_header, cfg::host_header_policy::literal);
    EXPECT_EQ(literal.host_header_value, "api.localhost:8080");
    EXPECT_EQ(one_route("    to: 127.0.0.1:1\n    host_header: \"[::1]:80\"\n").host_header_value,
              "[::1]:80");
    for (const auto* value : {"a b", "api.localhost:0", "api.localhost:x", "*.x.localhost"}) {
        EXPECT_EQ(route_errors(std::string("host: app.localhost\n    to: 127.0.0.1:1\n    "
                                           "host_header: \"") +
                               value + "\"\n"),
                  messages{"portico.yaml:4:18: route 1: 'host_header' must be preserve, backend "
                           "or a host[:port] such as api.localhost or api.localhost:8080"})
            << value;
    }
}

TEST(ConfigRouteTest, DuplicateHostAndPathAfterNormalisation)
{
    const auto duplicate = [](const std::string& host, const std::string& path) {
        return errors("routes:\n  - host: app.localhost\n    path: /api\n    to: 127.0.0.1:1\n"
                      "  - host: " +
                      host + "\n    path: " + path + "\n    to: 127.0.0.1:2\n");
    };
    const messages expected{"portico.yaml:5:5: route 2: host 'app.localhost' with path '/api' is "
                            "already routed by route 1"};
    EXPECT_EQ(duplicate("app.localhost", "/api"), expected);
    EXPECT_EQ(duplicate("APP.localhost", "/api"), expected);
    EXPECT_EQ(duplicate("app.localhost.", "/api"), expected);
    EXPECT_EQ(duplicate("app.localhost", "/api/"), expected);
    EXPECT_EQ(duplicate("app.localhost", "/x/../api"), expected);
    EXPECT_TRUE(duplicate("app.localhost", "/apix").empty());
    EXPECT_TRUE(duplicate("other.localhost", "/api").empty());
    EXPECT_TRUE(duplicate("\"*.app.localhost\"", "/api").empty());

    EXPECT_EQ(errors("routes:\n  - host: a.localhost\n    to: 127.0.0.1:1\n"
                     "  - host: A.localhost\n    path: /\n    to: 127.0.0.1:2\n"),
              messages{"portico.yaml:4:5: route 2: host 'a.localhost' with path '/' is already "
                       "routed by route 1"});
}

TEST(ConfigRouteTest, InsecureSkipVerifyOnlyForHttps)
{
    EXPECT_EQ(warnings("routes:\n  - host: app.localhost\n    to: 127.0.0.1:1\n"
                       "    insecure_skip_verify: true\n"),
              messages{"portico.yaml:4:27: route 1: insecure_skip_verify has no effect: 'to' is "
                       "not an https:// backend"});
    EXPECT_TRUE(warnings("routes:\n  - host: app.localhost\n    to: https://127.0.0.1:3443\n"
                         "    insecure_skip_verify: true\n")
                    .empty());
    EXPECT_TRUE(one_route("    to: https://127.0.0.1:3443\n    insecure_skip_verify: true\n")
                    .insecure_skip_verify);
    EXPECT_TRUE(load("routes:\n  - host: app.localhost\n    to: 127.0.0.1:1\n"
                     "    insecure_skip_verify: true\n")
                    .ok());
}

TEST(ConfigRouteTest, RedirectHttps)
{
    EXPECT_TRUE(one_route("    to: 127.0.0.1:1\n    redirect_https: true\n").redirect_https);
    EXPECT_FALSE(one_route("    to: 127.0.0.1:1\n").redirect_https);
}

TEST(ConfigRouteTest, HttpsOnlyRoutesWithoutATlsListenerAreWarnedAbout)
{
    const std::string off = "listen:\n  - address: 127.0.0.1:7080\n    tls: off\n";
    EXPECT_EQ(warnings(off + "routes:\n  - host: app.localhost\n    to: 127.0.0.1:1\n"
                             "    redirect_https: true\n"),
              messages{"portico.yaml:7:21: route 1: redirect_https has no effect: every listener "
                       "is tls: off, so none serves https"});
    EXPECT_EQ(warnings(off + "routes:\n  - host: db.localhost\n    tls_passthrough: true\n"
                             "    to: 127.0.0.1:1\n"),
              messages{"portico.yaml:6:22: route 1: tls_passthrough cannot be reached: every "
                       "listener is tls: off"});
    // One listener that serves TLS is enough, whatever its place in the file.
    EXPECT_TRUE(warnings("routes:\n  - host: app.localhost\n    to: 127.0.0.1:1\n"
                         "    redirect_https: true\n" +
                         off + "  - address: 127.0.0.1:7443\n    tls: only\n")
                    .empty());
}

// ---------------------------------------------------------------- TLS passthrough

TEST(ConfigRouteTest, PassthroughRoute)
{
    const auto r = one_route("    tls_passthrough: true\n    to: 127.0.0.1:5433\n");
    EXPECT_TRUE(r.tls_passthrough);
    EXPECT_EQ(r.path, "/");
    EXPECT_EQ(one_route("    tls_passthrough: true\n    to: unix:/run/db.sock\n").to.scheme,
              cfg::backend_scheme::unix_socket);
    EXPECT_FALSE(
        one_route("    tls_passthrough: false\n    to: http://127.0.0.1:1\n").tls_passthrough);
}

TEST(ConfigRouteTest, PassthroughRefusesHttpKeys)
{
    EXPECT_EQ(route_errors(R"(host: db.localhost
    path: /db
    strip_prefix: true
    headers: { request: { remove: [Cookie] } }
    host_header: backend
    tls_passthrough: true
    to: 127.0.0.1:5433
)"),
              (messages{"portico.yaml:3:5: route 1: 'path' is not allowed with tls_passthrough: "
                        "the TLS stream is forwarded without decrypting it",
                        "portico.yaml:4:5: route 1: 'strip_prefix' is not allowed with "
                        "tls_passthrough: the TLS stream is forwarded without decrypting it",
                        "portico.yaml:5:5: route 1: 'headers' is not allowed with tls_passthrough: "
                        "the TLS stream is forwarded without decrypting it",
                        "portico.yaml:6:5: route 1: 'host_header' is not allowed with "
                        "tls_passthrough: the TLS stream is forwarded without decrypting it"}));
    const messages url{"portico.yaml:4:9: route 1: 'to' must be host:port or unix:/path with "
                       "tls_passthrough: the TLS stream is forwarded as is"};
    EXPECT_EQ(route_errors("host: db.localhost\n    tls_passthrough: true\n    to: "
                           "https://127.0.0.1:5433\n"),
              url);
    EXPECT_EQ(route_errors("host: db.localhost\n    tls_passthrough: true\n    to: "
                           "http://127.0.0.1:5433\n"),
              url);
}

TEST(ConfigRouteTest, PassthroughHostCannotHaveOtherRoutes)
{
    EXPECT_EQ(errors(R"(routes:
  - host: db.localhost
    tls_passthrough: true
    to: 127.0.0.1:5433
  - host: DB.localhost
    path: /admin
    to: 127.0.0.1:8080
)"),
              messages{"portico.yaml:5:5: route 2: host 'db.localhost' cannot have both "
                       "tls_passthrough and regular routes (see route 1)"});
    EXPECT_EQ(errors(R"(routes:
  - host: db.localhost
    to: 127.0.0.1:8080
  - host: db.localhost
    tls_passthrough: true
    to: 127.0.0.1:5433
)"),
              messages{"portico.yaml:4:5: route 2: host 'db.localhost' cannot have both "
                       "tls_passthrough and regular routes (see route 1)"});
    EXPECT_EQ(errors(R"(routes:
  - host: db.localhost
    tls_passthrough: true
    to: 127.0.0.1:5433
  - host: db.localhost
    tls_passthrough: true
    to: 127.0.0.1:5434
)"),
              messages{"portico.yaml:5:5: route 2: host 'db.localhost' with path '/' is already "
                       "routed by route 1"});
}

// ---------------------------------------------------------------- header rules

TEST(ConfigHeaderTest, RulesKeepFileOrder)
{
    const auto r = one_route(R"(    to: 127.0.0.1:1
    headers:
      request:
        set:
          X-B: "2"
          X-A: ""
        remove: [Cookie, Authorization]
      response:
        remove: [Server]
)");
    EXPECT_EQ(r.request_headers.set,
              (std::vector<std::pair<std::string, std::string>>{{"X-B", "2"}, {"X-A", ""}}));
    EXPECT_EQ(r.request_headers.remove, (messages{"Cookie", "Authorization"}));
    EXPECT_TRUE(r.response_headers.set.empty());
    EXPECT_EQ(r.response_headers.remove, messages{"Server"});
    EXPECT_TRUE(one_route("    to: 127.0.0.1:1\n").request_headers.empty());
}

TEST(ConfigHeaderTest, NamesMustBeTokens)
{
    EXPECT_EQ(route_errors("host: a.localhost\n    to: 127.0.0.1:1\n    headers:\n      request:\n"
                           "        set: { \"X Env\": dev }\n        remove: [\"Bad:Name\"]\n"),
              (messages{"portico.yaml:6:16: route 1: header name 'X Env' in "
                        "'headers.request.set' is not a valid RFC 9110 token",
                        "portico.yaml:7:18: route 1: header name 'Bad:Name' in "
                        "'headers.request.remove' is not a valid RFC 9110 token"}));
}

TEST(ConfigHeaderTest, HostAndHopByHopHeadersAreRefused)
{
    EXPECT_EQ(route_errors("host: a.localhost\n    to: 127.0.0.1:1\n    headers:\n      request:\n"
                           "        set: { host: x.localhost }\n"),
              messages{"portico.yaml:6:16: route 1: header 'host' in 'headers.request.set' cannot "
                       "be set: use host_header"});
    for (const std::string name : {"Content-Length", "Transfer-Encoding", "Connection", "Upgrade",
                                   "Keep-Alive", "TE", "Trailer", "Proxy-Connection", "HOST"}) {
        const auto reason = name == "HOST"
                                ? std::string("use host_header")
                                : std::string("portico manages framing and hop-by-hop headers "
                                              "itself");
        EXPECT_EQ(route_errors("host: a.localhost\n    to: 127.0.0.1:1\n    headers:\n"
                               "      response:\n        remove: [" +
                               name + "]\n"),
                  messages{"portico.yaml:6:18: route 1: header '" + name +
                           "' in 'headers.response.remove' cannot be removed: " + reason})
            << name;
    }
}

TEST(ConfigHeaderTest, ValueErrors)
{
    EXPECT_EQ(route_errors("host: a.localhost\n    to: 127.0.0.1:1\n    headers:\n      request:\n"
                           "        set:\n          X-A: \"a\\r\\nX-Evil: 1\"\n"
                           "          X-B: [1]\n          X-C:\n          X-D: \"nul\\0\"\n"),
              (messages{"portico.yaml:7:16: route 1: 'headers.request.set.X-A' must not contain "
                        "CR, LF or NUL",
                        "portico.yaml:8:16: route 1: 'headers.request.set.X-B' must be a string "
                        "(use \"\" for an empty value), not a list",
                        "portico.yaml:9:11: route 1: 'headers.request.set.X-C' must be a string "
                        "(use \"\" for an empty value), not empty",
                        "portico.yaml:10:16: route 1: 'headers.request.set.X-D' must not contain "
                        "CR, LF or NUL"}));
}

TEST(ConfigHeaderTest, NamesIgnoreCaseForDuplicates)
{
    EXPECT_EQ(route_errors("host: a.localhost\n    to: 127.0.0.1:1\n    headers:\n      request:\n"
                           "        set:\n          X-Env: a\n          x-env: b\n"),
              messages{"portico.yaml:8:11: route 1: header 'x-env' in 'headers.request.set' is "
                       "already set at line 7 (header names ignore case)"});
    EXPECT_EQ(route_errors("host: a.localhost\n    to: 127.0.0.1:1\n    headers:\n      request:\n"
                           "        set:\n          X-Env: a\n          X-Env: b\n"),
              messages{"portico.yaml:8:11: route 1: duplicate key 'X-Env' in "
                       "'headers.request.set' (first at line 7)"});
}

TEST(ConfigHeaderTest, StructureErrors)
{
    const std::string head = "host: a.localhost\n    to: 127.0.0.1:1\n    headers:\n";
    EXPECT_EQ(route_errors(head + "      requests: {}\n"),
              messages{"portico.yaml:5:7: route 1: unknown key 'requests' in 'headers'; did you "
                       "mean 'request'?"});
    EXPECT_EQ(route_errors(head + "      request: { sett: {} }\n"),
              messages{"portico.yaml:5:18: route 1: unknown key 'sett' in 'headers.request'; did "
                       "you mean 'set'?"});
    EXPECT_EQ(route_errors(head + "      request: { set: [X-A] }\n"),
              messages{"portico.yaml:5:23: route 1: 'headers.request.set' must be a mapping of "
                       "header names to values, not a list"});
    EXPECT_EQ(route_errors(head + "      request: { remove: Cookie }\n"),
              messages{"portico.yaml:5:26: route 1: 'headers.request.remove' must be a list of "
                       "header names, not a value"});
    EXPECT_EQ(route_errors(head + "      request: { remove: [[Cookie]] }\n"),
              messages{"portico.yaml:5:27: route 1: 'headers.request.remove' must be a list of "
                       "header names, not a list"});
    EXPECT_EQ(route_errors("host: a.localhost\n    to: 127.0.0.1:1\n    headers: [X-A]\n"),
              messages{"portico.yaml:4:14: route 1: 'headers' must be a mapping with 'request' "
                       "and 'response', not a list"});
}

// ---------------------------------------------------------------- paths and TLS

TEST(ConfigPathTest, ExpandsHomeVariablesAndRelativePaths)
{
    const auto env = fake_env({{"HOME", "/home/dev"}, {"DATA", "/data"}, {"EMPTY", ""}});
    const auto ca_dir = [&](const std::string& value) {
        return valid("tls:\n  ca_dir: \"" + value + "\"\n", env, "/srv/project/portico.yaml")
            .tls.ca_dir;
    };
    EXPECT_EQ(ca_dir("~"), fs::path("/home/dev"));
    EXPECT_EQ(ca_dir("~/ca"), fs::path("/home/dev/ca"));
    EXPECT_EQ(ca_dir("${DATA}/ca"), fs::path("/data/ca"));
    EXPECT_EQ(ca_dir("${DATA}${EMPTY}/${DATA}"), fs::path("/data/data"));
    EXPECT_EQ(ca_dir("ca"), fs::path("/srv/project/ca"));
    EXPECT_EQ(ca_dir("./state/../ca/"), fs::path("/srv/project/ca"));
    EXPECT_EQ(ca_dir("/abs/ca/"), fs::path("/abs/ca"));
    EXPECT_EQ(ca_dir("$DATA/ca"), fs::path("/srv/project/$DATA/ca"));
}

TEST(ConfigPathTest, RelativeConfigFileResolvesAgainstWorkingDirectory)
{
    const auto c = valid("tls:\n  ca_dir: ca\n", fake_env(), "portico.yaml");
    EXPECT_EQ(c.tls.ca_dir, fs::current_path() / "ca");
    const auto nested = valid("tls:\n  ca_dir: ca\n", fake_env(), "config/portico.yaml");
    EXPECT_EQ(nested.tls.ca_dir, fs::current_path() / "config/ca");
}

TEST(ConfigPathTest, ExpansionErrors)
{
    const auto ca_dir_errors = [](const std::string& value, const cfg::environment& env) {
        return errors("tls:\n  ca_dir: \"" + value + "\"\n", env);
    };
    const auto expect = [](const std::string& message) {
        return messages{"portico.yaml:2:11: 'tls.ca_dir': " + message};
    };
    const auto env = fake_env();
    EXPECT_EQ(ca_dir_errors("${PROJECT}/ca", env),
              expect("environment variable 'PROJECT' is not set"));
    EXPECT_EQ(ca_dir_errors("~bob/ca", env),
              expect("'~user' paths are not supported; use ~/ or ${VAR}"));
    EXPECT_EQ(ca_dir_errors("${DATA/ca", env), expect("'${' has no closing '}'"));
    EXPECT_EQ(ca_dir_errors("${1X}/ca", env), expect("'${1X}' is not a valid variable name"));
    EXPECT_EQ(ca_dir_errors("${}/ca", env), expect("'${}' is not a valid variable name"));
    EXPECT_EQ(ca_dir_errors("", env), expect("the path is empty"));
    EXPECT_EQ(ca_dir_errors("~/ca", fake_env({})),
              expect("'~' needs the HOME environment variable, which is not set"));
}

TEST(ConfigPathTest, DefaultCaDir)
{
    EXPECT_EQ(
        valid("{}\n", fake_env({{"HOME", "/home/dev"}, {"XDG_DATA_HOME", "/xdg"}})).tls.ca_dir,
        fs::path("/xdg/portico"));
    // XDG Base Directory: a relative XDG_DATA_HOME is ignored.
    EXPECT_EQ(valid("{}\n", fake_env({{"HOME", "/home/dev"}, {"XDG_DATA_HOME", "xdg"}})).tls.ca_dir,
              fs::path("/home/dev/.local/share/portico"));
    EXPECT_EQ(errors("{}\n", fake_env({})),
              messages{"portico.yaml:1:1: 'tls.ca_dir' has no default because neither "
                       "XDG_DATA_HOME nor HOME is set; set tls.ca_dir"});
    EXPECT_EQ(valid("tls:\n  ca_dir: /ca\n", fake_env({})).tls.ca_dir, fs::path("/ca"));
}

TEST(ConfigTlsTest, PermittedNames)
{
    EXPECT_EQ(valid("tls:\n  ca_permitted_names: [Localhost, test., dev.internal]\n")
                  .tls.ca_permitted_names,
              (messages{"localhost", "test", "dev.internal"}));
    EXPECT_EQ(
        errors("tls:\n  ca_permitted_names: []\n"),
        messages{"portico.yaml:2:23: 'tls.ca_permitted_names' must be a non-empty list of DNS "
                 "suffixes such as [localhost, test]"});
    EXPECT_EQ(
        errors("tls:\n  ca_permitted_names: localhost\n"),
        messages{"portico.yaml:2:23: 'tls.ca_permitted_names' must be a non-empty list of DNS "
                 "suffixes such as [localhost, test], not a value"});
    EXPECT_EQ(errors("tls:\n  ca_permitted_names: [\"*.test\", 127.0.0.1, a_b]\n"),
              (messages{"portico.yaml:2:24: 'tls.ca_permitted_names': '*.test' is not a valid DNS "
                        "suffix: a wildcard is not allowed here",
                        "portico.yaml:2:34: 'tls.ca_permitted_names': '127.0.0.1' is not a valid "
                        "DNS suffix: an IP address is not a DNS suffix",
                        "portico.yaml:2:45: 'tls.ca_permitted_names': 'a_b' is not a valid DNS "
                        "suffix: '_' is not allowed; use letters, digits, '-' and '.'"}));
    // Names refused leave no list to warn about hosts outside of.
    const auto refused = load("tls:\n  ca_permitted_names: [a_b]\nroutes:\n  - host: app.localhost\n"
                              "    to: 127.0.0.1:1\n");
    EXPECT_EQ(refused.errors.size(), 1U);
    EXPECT_TRUE(refused.warnings.empty()) << texts(refused.warnings).front();
}

TEST(ConfigTlsTest, HostsOutsidePermittedNamesWarn)
{
    const auto yaml = R"(routes:
  - host: app.localhost
    to: 127.0.0.1:1
  - host: app.example.dev
    to: 127.0.0.1:2
  - host: "*.api.test"
    to: 127.0.0.1:3
  - host: db.example.dev
    tls_passthrough: true
    to: 127.0.0.1:5433
  - host: 127.0.0.2
    to: 127.0.0.1:4
admin: dash.example.dev
)";
    const auto result = load(yaml);
    EXPECT_TRUE(result.ok());
    EXPECT_EQ(texts(result.warnings),
              (messages{"portico.yaml:4:11: route 2: host 'app.example.dev' is outside "
                        "tls.ca_permitted_names (localhost, test): HTTPS for it needs a "
                        "certificate in tls.certificates",
                        "portico.yaml:13:8: admin host 'dash.example.dev' is outside "
                        "tls.ca_permitted_names (localhost, test): HTTPS for it needs a "
                        "certificate in tls.certificates"}));
    EXPECT_EQ(warnings("tls:\n  ca_permitted_names: [dev]\nroutes:\n  - host: app.localhost\n"
                       "    to: 127.0.0.1:1\nadmin: portico.dev\n"),
              (messages{"portico.yaml:2:23: 'tls.ca_permitted_names' leaves out localhost: "
                        "https://localhost will not verify (https://127.0.0.1 and https://[::1] "
                        "do)",
                        "portico.yaml:2:24: 'tls.ca_permitted_names': 'dev' is a top-level "
                        "domain on the internet: the CA could sign every site under it, the risk "
                        "the constraint is there to remove; prefer a name of your own, such as "
                        "dev.internal",
                        "portico.yaml:4:11: route 1: host 'app.localhost' is outside "
                        "tls.ca_permitted_names (dev): HTTPS for it needs a certificate in "
                        "tls.certificates"}));
}

TEST(ConfigTlsTest, UserCertificatesCoverHosts)
{
    const temp_dir dir;
    dir.write("certs/dev.pem", pem_cert);
    dir.write("certs/dev-key.pem", pem_key);
    const auto file = dir.write("portico.yaml", R"(tls:
  certificates:
    - hosts: ["*.Example.dev", example.dev]
      cert: certs/dev.pem
      key: ./certs/dev-key.pem
routes:
  - host: app.example.dev
    to: 127.0.0.1:1
  - host: example.dev
    to: 127.0.0.1:2
  - host: deep.app.example.dev
    to: 127.0.0.1:3
)");
    const auto result = cfg::load_file(file, fake_env());
    EXPECT_EQ(texts(result.errors), messages{});
    EXPECT_EQ(texts(result.warnings),
              messages{file.string() + ":11:11: route 3: host 'deep.app.example.dev' is outside "
                                       "tls.ca_permitted_names (localhost, test): HTTPS for it "
                                       "needs a certificate in tls.certificates"});
    ASSERT_TRUE(result.value.has_value());
    const auto& certificate = result.value->tls.certificates.at(0);
    EXPECT_EQ(certificate.hosts, (messages{"*.example.dev", "example.dev"}));
    EXPECT_EQ(certificate.cert, dir.path() / "certs/dev.pem");
    EXPECT_EQ(certificate.key, dir.path() / "certs/dev-key.pem");
    EXPECT_EQ(certificate.where.line, 3);
    EXPECT_EQ(certificate.where.column, 7);
}

TEST(ConfigTlsTest, CertificateErrors)
{
    const temp_dir dir;
    dir.write("cert.pem", pem_cert);
    dir.write("key.pem", pem_key);
    dir.write("cert.der", std::string("\x30\x82\x01\x0a", 4));
    fs::create_directories(dir.path() / "folder");
    const auto file = dir.write("portico.yaml", R"(tls:
  certificates:
    - hosts: [a.test]
      cert: missing.pem
      key: key.pem
    - hosts: []
      cert: cert.der
      key: folder
    - cert: cert.pem
    - hosts: ["a.Test", "bad..name"]
      cert: cert.pem
      key: key.pem
    - just-a-string
)");
    const auto f = file.string();
    const auto d = dir.path().string();
    EXPECT_EQ(texts(cfg::load_file(file, fake_env()).errors),
              (messages{
                  f + ":4:13: tls.certificates 1: 'cert' file '" + d + "/missing.pem' not found",
                  f + ":6:14: tls.certificates 2: 'hosts' must be a non-empty list of host names",
                  f + ":7:13: tls.certificates 2: 'cert' file '" + d +
                      "/cert.der' is not PEM (no '-----BEGIN' line)",
                  f + ":8:12: tls.certificates 2: 'key' file '" + d + "/folder' is a directory",
                  f + ":9:7: tls.certificates 3: 'hosts' is required (a non-empty list of host "
                      "names)",
                  f + ":9:7: tls.certificates 3: 'key' is required (a PEM private key file)",
                  f + ":10:15: tls.certificates 4: host 'a.test' already has a certificate "
                      "(tls.certificates 1)",
                  f + ":10:25: tls.certificates 4: host 'bad..name' is not valid: it has an empty "
                      "label",
                  f + ":13:7: tls.certificates 5: must be a mapping with 'hosts', 'cert' and "
                      "'key', not a value",
              }));
}

// ---------------------------------------------------------------- broken files

TEST(ConfigFileTest, TabsInIndentation)
{
    EXPECT_EQ(errors("listen:\n\t- 127.0.0.1:7080\n"),
              messages{"portico.yaml:2:1: tab character in indentation; YAML indentation must use "
                       "spaces"});
    EXPECT_EQ(errors("routes:\n  - host: a.localhost\n  \tto: 127.0.0.1:1\n"),
              messages{"portico.yaml:3:3: tab character in indentation; YAML indentation must use "
                       "spaces"});
    EXPECT_EQ(errors("timeouts:\n\tconnect: 1s\n"),
              messages{"portico.yaml:2:1: tab character in indentation; YAML indentation must use "
                       "spaces"});
    // Tabs elsewhere are ordinary YAML whitespace.
    EXPECT_TRUE(load("workers:\t2\t# two\nlisten: [127.0.0.1:7080,\n\t127.0.0.1:7081]\n").ok());
}

TEST(ConfigFileTest, UnclosedQuote)
{
    EXPECT_EQ(errors("workers: 1\nadmin: \"portico.localhost\nroutes: []\n"),
              messages{"portico.yaml:2:8: unclosed quote: the string starting here runs to the "
                       "end of the file"});
    EXPECT_EQ(errors("admin: 'it''s\n"),
              messages{"portico.yaml:1:8: unclosed quote: the string starting here runs to the "
                       "end of the file"});
    EXPECT_EQ(errors("admin: \"abc"),
              messages{"portico.yaml:1:12: unclosed quote: a quoted string runs to the end of the "
                       "file"});
    EXPECT_TRUE(load("admin: \"a\\\"b.localhost\"\n").errors.size() == 1);
    EXPECT_TRUE(load("admin: 'it''s.localhost' # fine quoting, bad host\n").errors.size() == 1);
}

TEST(ConfigFileTest, InvalidYamlSyntax)
{
    EXPECT_EQ(errors("routes: [\n"),
              messages{"portico.yaml:2:1: invalid YAML: end of sequence flow not found"});
    EXPECT_EQ(errors("admin: a\n workers: 2\n"),
              messages{"portico.yaml:2:9: invalid YAML: unexpected ':' (check the indentation, "
                       "and quote values that contain ': ')"});
}

TEST(ConfigFileTest, StrayCommaDoesNotHang)
{
    // yaml-cpp 0.7 loops forever on these (jbeder/yaml-cpp#1040).
    EXPECT_EQ(errors(","), messages{"portico.yaml:1:1: invalid YAML: unexpected ','"});
    EXPECT_EQ(errors(", a\n"), messages{"portico.yaml:1:1: invalid YAML: unexpected ','"});
    EXPECT_EQ(errors("  ,\n"), messages{"portico.yaml:1:3: invalid YAML: unexpected ','"});
    EXPECT_EQ(errors("admin: a.localhost\n---\n,\n"),
              messages{"portico.yaml:3:1: invalid YAML: unexpected ','"});
}

TEST(ConfigFileTest, BinaryContentIsNotText)
{
    EXPECT_EQ(errors(std::string("admin: x\n\0\x01\x02", 12)),
              messages{"portico.yaml:2:1: is not a text file (NUL byte)"});
    EXPECT_EQ(errors("admin: caf\xE9.localhost\n"),
              messages{"portico.yaml:1:11: is not a text file (invalid UTF-8)"});
    EXPECT_EQ(errors("admin: \xED\xA0\x80\n"),
              messages{"portico.yaml:1:8: is not a text file (invalid UTF-8)"});
    EXPECT_EQ(errors("admin: \xC0\xAF\n"),
              messages{"portico.yaml:1:8: is not a text file (invalid UTF-8)"});
}

TEST(ConfigFileTest, EmptyFileIsAnError)
{
    const messages empty{"portico.yaml:1:1: is empty; a configuration needs at least one key, e.g. "
                         "'routes' (remove the file to use the built-in default)"};
    EXPECT_EQ(errors(""), empty);
    EXPECT_EQ(errors("# nothing here\n\n   # still nothing\n"), empty);
    EXPECT_EQ(errors("---\n"), empty);
    EXPECT_TRUE(load("{}\n").ok());
}

TEST(ConfigFileTest, TopLevelMustBeAMapping)
{
    EXPECT_EQ(errors("- 127.0.0.1:7080\n"),
              messages{"portico.yaml:1:1: the top level must be a mapping of keys such as listen "
                       "and routes, not a list"});
    EXPECT_EQ(errors("hello\n"),
              messages{"portico.yaml:1:1: the top level must be a mapping of keys such as listen "
                       "and routes, not a value"});
}

TEST(ConfigFileTest, OneDocumentOnly)
{
    EXPECT_EQ(errors("admin: a.localhost\n---\nworkers: 1\n"),
              messages{"portico.yaml:2:1: only one YAML document is allowed; remove the '---' "
                       "separator"});
}

TEST(ConfigFileTest, ByteOrderMarkAndCrLfAreAccepted)
{
    const auto c = valid("\xEF\xBB\xBF"
                         "admin: x.localhost\r\nworkers: 2\r\n");
    EXPECT_EQ(c.admin, "x.localhost");
    EXPECT_EQ(c.workers, 2u);
    EXPECT_EQ(errors("\xEF\xBB\xBFworkers: x\n"),
              messages{"portico.yaml:1:10: 'workers' must be an integer from 0 to 256 (0 = one per "
                       "core)"});
}

TEST(ConfigFileTest, TooLargeText)
{
    EXPECT_EQ(errors(std::string(1024 * 1024 + 1, '#')),
              messages{"portico.yaml: is too large (1048577 bytes; at most 1 MiB)"});
}

TEST(ConfigFileTest, TooLargeFile)
{
    const temp_dir dir;
    const auto file = dir.write("portico.yaml", std::string(10 * 1024 * 1024, '#'));
    EXPECT_EQ(texts(cfg::load_file(file, fake_env()).errors),
              messages{file.string() + ": is too large (10485760 bytes; at most 1 MiB)"});
}

TEST(ConfigFileTest, MissingFileAndDirectory)
{
    const temp_dir dir;
    const auto missing = dir.path() / "nope.yaml";
    EXPECT_EQ(texts(cfg::load_file(missing, fake_env()).errors),
              messages{missing.string() + ": not found"});
    EXPECT_EQ(texts(cfg::load_file(dir.path(), fake_env()).errors),
              messages{dir.path().string() + ": is a directory"});
    EXPECT_EQ(texts(cfg::load_file("/dev/null", fake_env()).errors),
              messages{"/dev/null: is not a regular file"});
}

TEST(ConfigFileTest, UnreadableFile)
{
    if (::geteuid() == 0) {
        GTEST_SKIP() << "root reads files whatever their mode";
    }
    const temp_dir dir;
    const auto locked = dir.write("locked.yaml", "workers: 1\n");
    fs::permissions(locked, fs::perms::none);
    EXPECT_EQ(texts(cfg::load_file(locked, fake_env()).errors),
              messages{locked.string() + ": cannot be read (Permission denied)"});
}

TEST(ConfigFileTest, MessagesNameTheFileAsGiven)
{
    EXPECT_EQ(texts(cfg::parse("workers: x\n", "config/portico.yaml", fake_env()).errors),
              messages{"config/portico.yaml:1:10: 'workers' must be an integer from 0 to 256 (0 = "
                       "one per core)"});
    const temp_dir dir;
    const auto file = dir.write("portico.yaml", "workers: x\n");
    EXPECT_EQ(texts(cfg::load_file(file, fake_env()).errors),
              messages{file.string() + ":1:10: 'workers' must be an integer from 0 to 256 (0 = "
                                       "one per core)"});
}

TEST(ConfigFileTest, ValidFileLoads)
{
    const temp_dir dir;
    const auto file =
        dir.write("portico.yaml", "routes:\n  - host: app.localhost\n    to: unix:run/app.sock\n");
    const auto result = cfg::load_file(file, fake_env());
    ASSERT_TRUE(result.ok());
    ASSERT_TRUE(result.value.has_value());
    EXPECT_EQ(result.value->source, file);
    // Relative paths start at the file's directory, not at the working directory.
    EXPECT_EQ(result.value->routes.at(0).to.socket_path, dir.path() / "run/app.sock");
}

TEST(ConfigFileTest, FileLargerThanOneReadIsReadWhole)
{
    // The file is read in 16 KiB steps: a route at the end of a 60 KB file is still there.
    std::string text = "routes:\n";
    for (int i = 0; i < 1000; ++i) {
        text += fmt::format("  - host: app{}.localhost\n    to: 127.0.0.1:{}\n", i, 20000 + i);
    }
    ASSERT_GT(text.size(), 3 * 16 * 1024U);
    const temp_dir dir;
    const auto result = cfg::load_file(dir.write("portico.yaml", text), fake_env());
    ASSERT_TRUE(result.ok());
    ASSERT_EQ(result.value->routes.size(), 1000U);
    EXPECT_EQ(result.value->routes.back().host, "app999.localhost");
}

// ---------------------------------------------------------------- lookup order

TEST(ConfigLocateTest, CommandLineWins)
{
    const temp_dir dir;
    dir.write("portico.yaml", "{}\n");
    const auto found = cfg::locate(fs::path("custom.yaml"),
                                   fake_env({{"PORTICO_CONFIG", "/env.yaml"}}), dir.path());
    EXPECT_EQ(found.file, fs::path("custom.yaml"));
    EXPECT_EQ(found.origin, "-c");
}

TEST(ConfigLocateTest, EnvironmentVariableBeatsWorkingDirectory)
{
    const temp_dir dir;
    dir.write("portico.yaml", "{}\n");
    const auto found =
        cfg::locate(std::nullopt, fake_env({{"PORTICO_CONFIG", "/missing/env.yaml"}}), dir.path());
    EXPECT_EQ(found.file, fs::path("/missing/env.yaml"));
    EXPECT_EQ(found.origin, "PORTICO_CONFIG");
    // An empty variable is the same as an unset one.
    EXPECT_EQ(cfg::locate(std::nullopt, fake_env({{"PORTICO_CONFIG", ""}}), dir.path()).origin,
              "./portico.yaml");
}

TEST(ConfigLocateTest, WorkingDirectoryThenConfigDirectoryThenBuiltIn)
{
    const temp_dir dir;
    const auto env = fake_env();
    auto found = cfg::locate(std::nullopt, env, dir.path());
    EXPECT_EQ(found.file, std::nullopt);
    EXPECT_EQ(found.origin, "built-in");

    dir.write("config/portico.yaml", "{}\n");
    found = cfg::locate(std::nullopt, env, dir.path());
    EXPECT_EQ(found.file, dir.path() / "config/portico.yaml");
    EXPECT_EQ(found.origin, "./config/portico.yaml");

    dir.write("portico.yaml", "{}\n");
    found = cfg::locate(std::nullopt, env, dir.path());
    EXPECT_EQ(found.file, dir.path() / "portico.yaml");
    EXPECT_EQ(found.origin, "./portico.yaml");
}

TEST(ConfigLocateTest, EmptyWorkingDirectoryKeepsPathsRelative)
{
    const temp_dir dir;
    dir.write("portico.yaml", "{}\n");
    const auto saved = fs::current_path();
    fs::current_path(dir.path());
    const auto found = cfg::locate(std::nullopt, fake_env(), fs::path());
    fs::current_path(saved);
    EXPECT_EQ(found.file, fs::path("portico.yaml"));
    EXPECT_EQ(found.origin, "./portico.yaml");
}

// ---------------------------------------------------------------- the shipped example

const fs::path shipped_config = fs::path(PORTICO_SOURCE_DIR) / "config/portico.yaml";

TEST(ConfigShippedTest, LoadsClean)
{
    const auto result = cfg::load_file(shipped_config, fake_env());
    EXPECT_EQ(texts(result.errors), messages{});
    EXPECT_EQ(texts(result.warnings), messages{});
    ASSERT_TRUE(result.value.has_value());
    const auto& c = *result.value;
    ASSERT_EQ(c.listen.size(), 1u);
    EXPECT_EQ(c.listen[0].to_string(), "127.0.0.1:7080");
    EXPECT_EQ(c.admin, "portico.localhost");
    ASSERT_EQ(c.routes.size(), 1u);
    EXPECT_EQ(c.routes[0].host, "demo.localhost");
    EXPECT_EQ(c.routes[0].to.authority(), "127.0.0.1:7081");
}

TEST(ConfigShippedTest, ShowsEveryKey)
{
    std::ifstream in(shipped_config);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const auto* key : {"listen:",
                            "address:",
                            "tls:",
                            "allow_external:",
                            "workers:",
                            "ca_dir:",
                            "ca_permitted_names:",
                            "certificates:",
                            "hosts:",
                            "cert:",
                            "key:",
                            "admin:",
                            "timeouts:",
                            "connect:",
                            "header:",
                            "idle:",
                            "upstream:",
                            "shutdown:",
                            "limits:",
                            "header_bytes:",
                            "body_bytes:",
                            "routes:",
                            "host:",
                            "path:",
                            "to:",
                            "strip_prefix:",
                            "headers:",
                            "request:",
                            "response:",
                            "set:",
                            "remove:",
                            "host_header:",
                            "insecure_skip_verify:",
                            "redirect_https:",
                            "tls_passthrough:",
                            "allow_remote_backends:",
                            "unix:",
                            "https://"}) {
        EXPECT_NE(text.find(key), std::string::npos) << key;
    }
}

} // namespace
