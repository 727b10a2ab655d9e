// A real browser against the built binary: Debian's headless Chromium trusts the local CA only
// through an NSS database under a temporary HOME, which is where `portico ca install` puts it
// for Chromium, and never with --ignore-certificate-errors. The same browser then shows why
// trusting that CA is safe: a certificate for a real site signed with the CA's own key is
// refused, because the CA's name constraints do not permit the name.

#include "support/origin.hpp"
#include "support/portico_process.hpp"
#include "support/process.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace portico::test {
namespace {

constexpr const char* chromium_binary = "/usr/bin/chromium";

// Chromium loads a loopback page in about a second here; the bound leaves room for a CI machine
// that runs other test binaries beside it, and still ends a browser that hangs.
constexpr auto browser_limit = std::chrono::seconds(60);

// Text no error page or default page could contain, so finding it proves the backend's page
// was rendered.
constexpr std::string_view page_text = "portico-browser-check-5d1c8e";

/// Runs a command-line tool that must succeed; throws with its output otherwise.
void run_tool(const std::vector<std::string>& argv)
{
    const auto r = run_process(argv);
    if (!r.succeeded()) {
        throw std::runtime_error(
            fmt::format("{}: {}\n{}{}", cli::format_command(argv), r.describe(), r.out, r.err));
    }
}

/// What a browser load left behind, for failure messages: the DOM and Chromium's own
/// messages without the D-Bus complaints of a machine that has no session bus.
std::string describe_load(const process_result& load)
{
    std::istringstream lines(load.err);
    std::string messages;
    for (std::string line; std::getline(lines, line);) {
        if (line.find("dbus") == std::string::npos) {
            messages += line + "\n";
        }
    }
    return fmt::format("{}\nDOM:\n{}\nChromium:\n{}", load.describe(), load.out, messages);
}

/// Serves one HTML page that names the scheme portico says the request came with.
void serve_page(origin_connection& c)
{
    while (auto req = c.read_request()) {
        response res{beast::http::status::ok, 11};
        res.set(beast::http::field::content_type, "text/html; charset=utf-8");
        res.body() = fmt::format("<!doctype html><title>portico browser test</title>"
                                 "<p>{} via {}</p>",
                                 page_text, std::string((*req)["X-Forwarded-Proto"]));
        res.prepare_payload();
        c.write(res);
    }
}

/**
 * A throwaway browser user: a HOME holding an NSS database (where Chromium on Linux reads
 * user-trusted CAs) and an empty profile, both removed with the object.
 */
class browser_user {
public:
    browser_user()
    {
        std::filesystem::create_directories(home_.path() / ".pki" / "nssdb");
        run_tool({"certutil", "-N", "--empty-password", "-d", nssdb()});
    }

    /// Trusts `ca_pem` to identify TLS servers, as `portico ca install` does for Chromium.
    void trust(const std::filesystem::path& ca_pem) const
    {
        run_tool({"certutil", "-A", "-n", "portico-test", "-t", "C,,", "-i", ca_pem.string(), "-d",
                  nssdb()});
    }

    /**
     * Loads https://`host`:`port`/ with `host` resolved to 127.0.0.1.
     * @return the DOM after the load in `out` (empty when the load failed) and Chromium's
     *         messages, which name a failed load's net:: error, in `err`.
     */
    process_result load(const std::string& host, unsigned short port) const
    {
        return open(host, fmt::format("https://{}:{}/", host, port), {"--dump-dom"});
    }

    /**
     * Opens `url` with `host` resolved to 127.0.0.1 and Chromium's `actions` (e.g.
     * `--dump-dom`, `--screenshot=FILE`).
     */
    process_result open(const std::string& host, const std::string& url,
                        std::vector<std::string> actions) const
    {
        const auto home = home_.path().string();
        // HOME (with the XDG directories under it, which an inherited environment may point
        // elsewhere) decides which NSS database Chromium reads and keeps its caches in the
        // temporary directory. Every name but the one under test resolves to nothing and the
        // background-service switches stay off, so no traffic leaves loopback (strace shows
        // only Chromium's IPv6 reachability probe: a UDP connect() that sends nothing).
        std::vector<std::string> argv{
            chromium_binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--user-data-dir=" + home + "/profile",
            fmt::format("--host-resolver-rules=MAP {} 127.0.0.1, MAP * ~NOTFOUND", host)};
        argv.insert(argv.end(), actions.begin(), actions.end());
        argv.push_back(url);
        return run_process(argv, home_.path(),
                           child_environment({{"HOME", home},
                                              {"XDG_CONFIG_HOME", home + "/.config"},
                                              {"XDG_CACHE_HOME", home + "/.cache"}}),
                           browser_limit);
    }

private:
    std::string nssdb() const { return "sql:" + (home_.path() / ".pki" / "nssdb").string(); }

    temp_dir home_;
};

/// A key and certificate for `dns_name` signed with the CA's key, as anyone holding it could.
struct signed_leaf {
    signed_leaf(const std::filesystem::path& ca_dir, const std::filesystem::path& dir,
                const std::string& dns_name)
        : cert(dir / (dns_name + ".pem")), key(dir / (dns_name + "-key.pem"))
    {
        const auto request = dir / (dns_name + ".csr");
        const auto extensions = dir / (dns_name + ".ext");
        // The extensions a browser expects of a server certificate, so that nothing but the
        // name can be the reason for a refusal.
        std::ofstream(extensions) << "subjectAltName=DNS:" << dns_name
                                  << "\nbasicConstraints=critical,CA:FALSE"
                                  << "\nkeyUsage=critical,digitalSignature"
                                  << "\nextendedKeyUsage=serverAuth\n";
        run_tool({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-subj", "/CN=" + dns_name, "-keyout", key.string(), "-out",
                  request.string()});
        // OpenSSL 3 picks a random serial when none is given, and so writes nothing into
        // ca_dir.
        run_tool({"openssl", "x509", "-req", "-in", request.string(), "-CA",
                  (ca_dir / "ca.pem").string(), "-CAkey", (ca_dir / "ca-key.pem").string(), "-days",
                  "2", "-extfile", extensions.string(), "-out", cert.string()});
    }

    std::filesystem::path cert;
    std::filesystem::path key;
};

TEST(BrowserTest, ChromiumTrustsLocalCaWithoutWarnings)
{
    if (!std::filesystem::exists(chromium_binary)) {
        GTEST_SKIP() << chromium_binary << " is missing; scripts/install-deps.sh installs it";
    }
    origin backend(serve_page);
    running_portico portico(route_to(backend.port()));
    browser_user user;
    user.trust(portico.ca_dir() / "ca.pem");

    const auto page = user.load("app.localhost", portico.port);

    EXPECT_NE(page.out.find(fmt::format("{} via https", page_text)), std::string::npos)
        << describe_load(page);
}

TEST(BrowserTest, ChromiumRefusesCaSignedLeafOutsidePermittedNames)
{
    if (!std::filesystem::exists(chromium_binary)) {
        GTEST_SKIP() << chromium_binary << " is missing; scripts/install-deps.sh installs it";
    }
    // portico creates its CA at start; the test then uses the CA's key the way a thief would.
    running_portico portico("");
    temp_dir dir;
    // A permitted name signed the same way is the control: it shows that the browser trusts the
    // CA and accepts these hand-made certificates, so only the name explains the refusal.
    const signed_leaf permitted(portico.ca_dir(), dir.path(), "signed.test");
    const signed_leaf foreign(portico.ca_dir(), dir.path(), "example.com");
    const auto ca_pem = (portico.ca_dir() / "ca.pem").string();

    const auto verified =
        run_process({"openssl", "verify", "-CAfile", ca_pem, permitted.cert.string()});
    EXPECT_TRUE(verified.succeeded()) << verified;
    const auto refused =
        run_process({"openssl", "verify", "-CAfile", ca_pem, foreign.cert.string()});
    EXPECT_FALSE(refused.succeeded()) << refused;
    EXPECT_NE((refused.out + refused.err).find("permitted subtree violation"), std::string::npos)
        << refused;

    tls_origin permitted_site(permitted.cert, permitted.key);
    tls_origin foreign_site(foreign.cert, foreign.key);
    browser_user user;
    user.trust(ca_pem);

    const auto control = user.load("signed.test", permitted_site.port());
    EXPECT_NE(control.out.find("tls-backend GET /"), std::string::npos) << describe_load(control);

    const auto page = user.load("example.com", foreign_site.port());
    EXPECT_EQ(page.out.find("tls-backend"), std::string::npos) << describe_load(page);
    // Headless Chromium dumps no DOM for a refused certificate and names the error instead
    // (ERR_CERT_INVALID for a name-constraint violation in Chromium 156).
    EXPECT_NE(page.err.find("net::ERR_CERT_"), std::string::npos) << describe_load(page);
}

TEST(BrowserTest, DashboardShowsRoutesBackendStatesAndRequests)
{
    if (!std::filesystem::exists(chromium_binary)) {
        GTEST_SKIP() << chromium_binary << " is missing; scripts/install-deps.sh installs it";
    }
    origin app(serve_page);
    refused_port api;
    running_portico portico(fmt::format(
        "routes:\n  - host: app.localhost\n    to: 127.0.0.1:{}\n"
        "  - host: app.localhost\n    path: /api\n    strip_prefix: true\n    to: 127.0.0.1:{}\n"
        "  - host: \"*.preview.localhost\"\n    to: 127.0.0.1:{}\n",
        app.port(), api.port(), app.port()));
    for (const auto* target : {"/", "/assets/main.js", "/api/users", "/favicon.ico"}) {
        client c(portico.port);
        c.get("app.localhost", target);
    }
    {
        client c(portico.port);
        c.get("pr-42.preview.localhost", "/");
    }
    browser_user user;
    const auto url = fmt::format("http://portico.localhost:{}/", portico.port);

    // The page as rendered by portico, after its live-update script has run for a while.
    const auto page =
        user.open("portico.localhost", url, {"--virtual-time-budget=3000", "--dump-dom"});
    const auto& dom = page.out;
    EXPECT_NE(dom.find("<h1>portico</h1>"), std::string::npos) << describe_load(page);
    EXPECT_NE(dom.find(fmt::format("<a href=\"http://app.localhost:{}/\">app.localhost</a>",
                                   portico.port)),
              std::string::npos)
        << describe_load(page);
    const auto api_row = dom.find("data-route=\"app.localhost/api\"");
    ASSERT_NE(api_row, std::string::npos) << describe_load(page);
    const auto api_state = dom.find("badge ", api_row);
    EXPECT_EQ(dom.find("badge down\">not listening<", api_row), api_state)
        << dom.substr(api_row, 400);
    EXPECT_NE(dom.find(fmt::format("start your dev server on 127.0.0.1:{}", api.port())),
              std::string::npos);
    EXPECT_NE(dom.find("badge up\">listening<"), std::string::npos);
    EXPECT_NE(dom.find("/assets/main.js"), std::string::npos) << "recent requests missing";
    // The embedded script fetched the page again and marked it live.
    EXPECT_NE(dom.find("id=\"live\">live<"), std::string::npos) << describe_load(page);

    // A screenshot for people (docs/dashboard.png is one of these), kept in the build tree.
    const auto shot = std::filesystem::absolute("dashboard.png");
    std::filesystem::remove(shot);
    const auto taken = user.open("portico.localhost", url,
                                 {"--window-size=1280,900", "--hide-scrollbars",
                                  "--virtual-time-budget=2000", "--screenshot=" + shot.string()});
    ASSERT_TRUE(std::filesystem::exists(shot)) << describe_load(taken);
    EXPECT_GT(std::filesystem::file_size(shot), 20000U) << "an empty page compresses smaller";
}

/// The dashboard as a running portico renders it.
std::string rendered_dashboard(const running_portico& portico)
{
    client c(portico.port);
    const auto res = c.get("portico.localhost", "/");
    EXPECT_EQ(res.result_int(), 200);
    return res.body();
}

/**
 * Serves `first` (a dashboard portico rendered) to the page load, then `later` with status
 * `later_status` to each of the page's refreshes: what a portico that was reloaded in
 * between would answer, without waiting for a reload in the browser's virtual time.
 */
class dashboard_stand_in {
public:
    dashboard_stand_in(std::string first, std::string later, beast::http::status later_status)
        : first_(std::move(first)), later_(std::move(later)), status_(later_status),
          server_([this](origin_connection& c) { serve(c); })
    {
    }

    int served() const { return served_.load(); }
    std::string url() const { return fmt::format("http://portico.localhost:{}/", server_.port()); }

private:
    void serve(origin_connection& c)
    {
        while (auto req = c.read_request()) {
            const bool first = served_.fetch_add(1) == 0;
            response res{first ? beast::http::status::ok : status_, 11};
            res.set(beast::http::field::content_type, "text/html; charset=utf-8");
            res.body() = first ? first_ : later_;
            res.prepare_payload();
            c.write(res);
        }
    }

    std::string first_;
    std::string later_;
    beast::http::status status_;
    std::atomic<int> served_{0};
    origin server_; ///< last: its threads use the members above
};

TEST(BrowserTest, DashboardRefreshShowsTheListenersAfterAReload)
{
    if (!std::filesystem::exists(chromium_binary)) {
        GTEST_SKIP() << chromium_binary << " is missing; scripts/install-deps.sh installs it";
    }
    running_portico portico("routes: []\n");
    const auto dashboard = rendered_dashboard(portico);
    // Then as it renders after a reload that moved its listener.
    const auto listening = fmt::format("listening on 127.0.0.1:{}", portico.port);
    ASSERT_NE(dashboard.find(listening), std::string::npos) << dashboard;
    auto reloaded = dashboard;
    reloaded.replace(reloaded.find(listening), listening.size(), "listening on 127.0.0.1:7999");
    dashboard_stand_in stand_in(dashboard, reloaded, beast::http::status::ok);
    browser_user user;
    const auto page =
        user.open("portico.localhost", stand_in.url(), {"--virtual-time-budget=3000", "--dump-dom"});
    EXPECT_NE(page.out.find("listening on 127.0.0.1:7999"), std::string::npos)
        << describe_load(page);
    EXPECT_NE(page.out.find("id=\"live\">live<"), std::string::npos) << describe_load(page);
}

TEST(BrowserTest, DashboardSaysOfflineWhenItsRefreshIsRefused)
{
    if (!std::filesystem::exists(chromium_binary)) {
        GTEST_SKIP() << chromium_binary << " is missing; scripts/install-deps.sh installs it";
    }
    running_portico portico("routes: []\n");
    // Then what a portico that now refuses the page answers (a reload that moved the admin
    // host, say): its refreshes fail with a status.
    dashboard_stand_in stand_in(rendered_dashboard(portico), "refused",
                                beast::http::status::forbidden);
    browser_user user;
    const auto page =
        user.open("portico.localhost", stand_in.url(), {"--virtual-time-budget=3000", "--dump-dom"});
    EXPECT_GT(stand_in.served(), 1) << describe_load(page);
    EXPECT_NE(page.out.find("id=\"live\">offline (HTTP 403)<"), std::string::npos)
        << describe_load(page);
}

} // namespace
} // namespace portico::test
