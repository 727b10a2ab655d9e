// `portico ca path|install|uninstall` as users run it: the built binary in a temporary HOME
// with a CA directory inside it, against the real tools (certutil from libnss3-tools for the
// NSS databases; update-ca-certificates for the Debian system store, when running as root).

#include "support/process.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;
using portico::test::contains;
using portico::test::env_overrides;
using portico::test::lines_of;
using portico::test::process_result;

// update-ca-certificates rebuilds the whole system bundle and rehashes /etc/ssl/certs, and
// certutil opens an SQLite database per call: slower than the CLI's other verbs.
constexpr auto store_deadline = std::chrono::seconds(30);

constexpr std::string_view debian_anchor_dir = "/usr/local/share/ca-certificates";
constexpr std::string_view debian_bundle = "/etc/ssl/certs/ca-certificates.crt";

unsigned mode_of(const fs::path& path)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        return 0;
    }
    return st.st_mode & 07777;
}

/// A PEM text without carriage returns or surrounding blanks (certutil writes CRLF).
std::string normalized_pem(std::string pem)
{
    pem.erase(std::remove(pem.begin(), pem.end(), '\r'), pem.end());
    const auto first = pem.find_first_not_of(" \n");
    const auto last = pem.find_last_not_of(" \n");
    return first == std::string::npos ? std::string() : pem.substr(first, last - first + 1);
}

class CaTest : public portico::test::binary_test {
protected:
    const char* binary() const override { return PORTICO_BINARY; }

    void SetUp() override
    {
        binary_test::SetUp();
        ca_dir_ = dir_ / "ca";
        write_file("portico.yaml", "tls:\n  ca_dir: " + ca_dir_.string() + "\n");
    }

    /// `portico ca ACTION -c portico.yaml`, touching only the stores in `stores`.
    process_result ca(std::string_view action, std::string_view stores = "nss",
                      env_overrides env = {})
    {
        env.try_emplace("PORTICO_TRUST_STORES", std::string(stores));
        return portico({"ca", std::string(action), "-c", "portico.yaml"}, std::move(env),
                       store_deadline);
    }

    /// Runs a tool (certutil) with the test's environment.
    process_result tool(const std::vector<std::string>& argv)
    {
        return portico::test::run_process(argv, dir_, portico::test::child_environment({}),
                                          store_deadline);
    }

    static bool has_certutil() { return portico::cli::find_program("certutil").has_value(); }

    /// Creates an empty NSS database in `dir`, as Firefox does for a new profile.
    void create_nss_database(const fs::path& dir)
    {
        fs::create_directories(dir);
        const auto r = tool({"certutil", "-N", "--empty-password", "-d", "sql:" + dir.string()});
        ASSERT_TRUE(r.succeeded()) << r;
        ASSERT_TRUE(fs::exists(dir / "cert9.db"));
    }

    /// The nicknames of portico CAs in the NSS database in `dir`.
    std::vector<std::string> portico_nicknames(const fs::path& dir)
    {
        const auto r = tool({"certutil", "-L", "-d", "sql:" + dir.string()});
        EXPECT_TRUE(r.succeeded()) << r;
        std::vector<std::string> names;
        for (const auto& line : lines_of(r.out)) {
            if (line.starts_with("portico local CA (")) {
                names.push_back(line.substr(0, line.rfind(')') + 1));
            }
        }
        return names;
    }

    /// The certificate stored under `nickname` in `dir`, in PEM.
    std::string certificate_in(const fs::path& dir, const std::string& nickname)
    {
        const auto r = tool({"certutil", "-L", "-d", "sql:" + dir.string(), "-n", nickname, "-a"});
        EXPECT_TRUE(r.succeeded()) << r;
        return normalized_pem(r.out);
    }

    /// True when the NSS database in `dir` holds exactly this test's CA, trusted for TLS.
    void expect_holds_ca(const fs::path& dir)
    {
        const auto names = portico_nicknames(dir);
        ASSERT_EQ(names.size(), 1U) << dir;
        EXPECT_EQ(certificate_in(dir, names.front()), normalized_pem(read_file(ca_pem())));
        const auto listing = tool({"certutil", "-L", "-d", "sql:" + dir.string()});
        EXPECT_TRUE(contains(listing.out, "C,,")) << listing;
    }

    fs::path ca_pem() const { return ca_dir_ / "ca.pem"; }
    fs::path chromium_db() const { return dir_ / ".pki/nssdb"; }
    fs::path firefox_profile() const { return dir_ / ".mozilla/firefox/abc.default"; }

    fs::path ca_dir_;
};

/// The tests that need certutil (Debian package libnss3-tools, from scripts/install-deps.sh).
class CaNssTest : public CaTest {
protected:
    void SetUp() override
    {
        CaTest::SetUp();
        if (!has_certutil()) {
            GTEST_SKIP() << "certutil is not installed (Debian package libnss3-tools)";
        }
    }
};

TEST_F(CaTest, PathCreatesTheCaAndPrintsItsPath)
{
    const auto r = ca("path");
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_EQ(r.out, ca_pem().string() + "\n");
    ASSERT_TRUE(fs::is_regular_file(ca_pem())) << r;
    EXPECT_TRUE(contains(read_file(ca_pem()), "-----BEGIN CERTIFICATE-----"));
    EXPECT_EQ(mode_of(ca_dir_ / "ca-key.pem"), 0600U);
    EXPECT_EQ(mode_of(ca_dir_), 0700U);
}

TEST_F(CaTest, PathTwiceKeepsTheSameCa)
{
    const auto first = ca("path");
    ASSERT_EQ(first.exit_code, 0) << first;
    const auto pem = read_file(ca_pem());
    const auto written = fs::last_write_time(ca_pem());

    const auto second = ca("path");
    ASSERT_EQ(second.exit_code, 0) << second;
    EXPECT_EQ(second.out, first.out);
    EXPECT_EQ(read_file(ca_pem()), pem);
    EXPECT_EQ(fs::last_write_time(ca_pem()), written);
}

TEST_F(CaTest, PathFollowsTheConfigLookup)
{
    // No -c: ./portico.yaml in the working directory names the CA directory.
    const auto found = portico({"ca", "path"});
    ASSERT_EQ(found.exit_code, 0) << found;
    EXPECT_EQ(found.out, ca_pem().string() + "\n");

    // No file at all: the built-in default, $XDG_DATA_HOME/portico.
    fs::remove(dir_ / "portico.yaml");
    const auto fallback = portico({"ca", "path"});
    ASSERT_EQ(fallback.exit_code, 0) << fallback;
    EXPECT_EQ(fallback.out, (dir_ / "data/portico/ca.pem").string() + "\n");
}

TEST_F(CaTest, MissingConfigFileExitsOne)
{
    const auto r = portico({"ca", "path", "-c", "missing.yaml"});
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_TRUE(contains(r.err, "missing.yaml")) << r;
    EXPECT_TRUE(r.out.empty()) << r;
}

TEST_F(CaTest, DamagedCaIsAnErrorNamingTheFile)
{
    ASSERT_EQ(ca("path").exit_code, 0);
    write_file(ca_pem(), "this is not a certificate\n");
    for (const auto* action : {"path", "install"}) {
        const auto r = ca(action);
        EXPECT_EQ(r.exit_code, 1) << action << "\n" << r;
        EXPECT_TRUE(contains(r.err, ca_pem().string())) << r;
        EXPECT_TRUE(r.out.empty()) << r;
    }
    // Never silently replaced by a new CA.
    EXPECT_EQ(read_file(ca_pem()), "this is not a certificate\n");
}

TEST_F(CaNssTest, InstallAddsTheCaToChromiumsDatabase)
{
    const auto r = ca("install");
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_FALSE(contains(r.err, "failed")) << r;
    EXPECT_TRUE(contains(r.out, "local CA: " + ca_pem().string())) << r;
    EXPECT_TRUE(
        contains(r.out, "installed: Chromium NSS database (" + chromium_db().string() + ")\n"))
        << r;
    EXPECT_TRUE(contains(r.out, "skipped: system store (not in PORTICO_TRUST_STORES)")) << r;
    EXPECT_TRUE(contains(r.out, "skipped: Firefox (")) << r;
    expect_holds_ca(chromium_db());
}

TEST_F(CaNssTest, SecondInstallChangesNothing)
{
    create_nss_database(firefox_profile());
    ASSERT_EQ(ca("install").exit_code, 0);
    const auto chromium_before = read_file(chromium_db() / "cert9.db");
    const auto firefox_before = read_file(firefox_profile() / "cert9.db");

    const auto r = ca("install");
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "already installed: Chromium NSS database (" +
                                    chromium_db().string() + ")\n"))
        << r;
    EXPECT_TRUE(contains(r.out, "already installed: Firefox profile (" +
                                    firefox_profile().string() + ")\n"))
        << r;
    EXPECT_FALSE(contains(r.out, "\ninstalled:")) << r;
    EXPECT_EQ(read_file(chromium_db() / "cert9.db"), chromium_before);
    EXPECT_EQ(read_file(firefox_profile() / "cert9.db"), firefox_before);
    expect_holds_ca(chromium_db());
}

TEST_F(CaNssTest, InstallAddsTheCaToFirefoxProfiles)
{
    create_nss_database(firefox_profile());
    // A directory without cert9.db is not a profile and is left alone.
    fs::create_directories(dir_ / ".mozilla/firefox/Crash Reports");

    const auto r = ca("install");
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(
        contains(r.out, "installed: Firefox profile (" + firefox_profile().string() + ")\n"))
        << r;
    EXPECT_FALSE(contains(r.out, "skipped: Firefox")) << r;
    EXPECT_FALSE(contains(r.out, "Crash Reports")) << r;
    expect_holds_ca(firefox_profile());
    expect_holds_ca(chromium_db());
}

TEST_F(CaNssTest, UninstallRemovesTheCaAndIsIdempotent)
{
    create_nss_database(firefox_profile());
    ASSERT_EQ(ca("install").exit_code, 0);

    const auto removed = ca("uninstall");
    ASSERT_EQ(removed.exit_code, 0) << removed;
    EXPECT_TRUE(
        contains(removed.out, "removed: Chromium NSS database (" + chromium_db().string() + ")\n"))
        << removed;
    EXPECT_TRUE(
        contains(removed.out, "removed: Firefox profile (" + firefox_profile().string() + ")\n"))
        << removed;
    EXPECT_TRUE(portico_nicknames(chromium_db()).empty());
    EXPECT_TRUE(portico_nicknames(firefox_profile()).empty());
    // The CA itself stays, and the output says where.
    EXPECT_TRUE(fs::exists(ca_pem()));
    EXPECT_TRUE(contains(removed.out, "kept in " + ca_dir_.string())) << removed;

    const auto again = ca("uninstall");
    ASSERT_EQ(again.exit_code, 0) << again;
    EXPECT_TRUE(contains(again.out,
                         "not installed: Chromium NSS database (" + chromium_db().string() + ")"))
        << again;
    EXPECT_TRUE(
        contains(again.out, "not installed: Firefox profile (" + firefox_profile().string() + ")"))
        << again;
    EXPECT_FALSE(contains(again.out, "removed:")) << again;
}

TEST_F(CaNssTest, FailedStoreExitsOneWithTheCommandsError)
{
    write_file(".pki/nssdb/cert9.db", "not an SQLite database\n");
    create_nss_database(firefox_profile());

    const auto r = ca("install");
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_TRUE(
        contains(r.err, "failed: Chromium NSS database (" + chromium_db().string() + "): '"))
        << r;
    EXPECT_TRUE(contains(r.err, "certutil")) << r;
    EXPECT_TRUE(contains(r.err, "SEC_ERROR_BAD_DATABASE")) << r; // certutil's own stderr
    // The other stores are still handled.
    EXPECT_TRUE(
        contains(r.out, "installed: Firefox profile (" + firefox_profile().string() + ")\n"))
        << r;
    expect_holds_ca(firefox_profile());
}

TEST_F(CaTest, UninstallWithoutACaCreatesNothing)
{
    const auto r = ca("uninstall");
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "no local CA in " + ca_dir_.string())) << r;
    EXPECT_FALSE(contains(r.out, "removed:")) << r;
    EXPECT_FALSE(fs::exists(ca_dir_));
    EXPECT_FALSE(fs::exists(chromium_db()));
}

TEST_F(CaNssTest, UninstallAfterTheCaDirectoryWasDeletedStillRemovesTheCa)
{
    create_nss_database(firefox_profile());
    ASSERT_EQ(ca("install").exit_code, 0);
    fs::remove_all(ca_dir_);

    const auto r = ca("uninstall");
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "no local CA in " + ca_dir_.string())) << r;
    EXPECT_TRUE(contains(r.out, "removed: Chromium NSS database (" + chromium_db().string() + ")"))
        << r;
    EXPECT_TRUE(
        contains(r.out, "removed: Firefox profile (" + firefox_profile().string() + ")"))
        << r;
    EXPECT_TRUE(portico_nicknames(chromium_db()).empty());
    EXPECT_TRUE(portico_nicknames(firefox_profile()).empty());
    EXPECT_FALSE(fs::exists(ca_dir_)) << "uninstall must not create a CA";
}

TEST_F(CaNssTest, InstallReplacesAnOlderCaOfTheSameUser)
{
    ASSERT_EQ(ca("install").exit_code, 0);
    const auto old_pem = normalized_pem(read_file(ca_pem()));

    // The user deleted the CA directory: a new CA with the same name replaces the old one.
    fs::remove_all(ca_dir_);
    const auto r = ca("install");
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "installed: Chromium NSS database (" + chromium_db().string() +
                                    ") (replaced an older portico CA)"))
        << r;
    EXPECT_NE(normalized_pem(read_file(ca_pem())), old_pem);
    expect_holds_ca(chromium_db());
}

TEST_F(CaNssTest, InstallPrintsTheEnvironmentVariablesToolsNeed)
{
    const auto r = ca("install");
    ASSERT_EQ(r.exit_code, 0) << r;
    // Without the system store in the selection, the bundle variables point at ca.pem.
    for (const auto* name :
         {"NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"}) {
        EXPECT_TRUE(contains(r.out, std::string("export ") + name + "=" + ca_pem().string()))
            << name << "\n"
            << r;
    }
    const auto lines = lines_of(r.out);
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (lines[i].starts_with("export ")) {
            ASSERT_GT(i, 0U);
            EXPECT_TRUE(lines[i - 1].starts_with("# ")) << "no explanation before " << lines[i];
        }
    }
}

TEST_F(CaTest, MissingCertutilIsSkippedWithTheFix)
{
    // A PATH without certutil (nor sudo); the system store is not selected.
    fs::create_directories(dir_ / "bin");
    const auto r = ca("install", "nss", {{"PATH", (dir_ / "bin").string()}});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "skipped: Chromium and Firefox NSS databases (certutil not "
                                "found; install libnss3-tools)"))
        << r;
    EXPECT_FALSE(fs::exists(chromium_db()));
}

TEST_F(CaTest, UnknownTrustStoreSelectionExitsOne)
{
    const auto r = ca("install", "system,java");
    EXPECT_EQ(r.exit_code, 1) << r;
    EXPECT_TRUE(contains(r.err, "PORTICO_TRUST_STORES")) << r;
    EXPECT_TRUE(contains(r.err, "'java'")) << r;
    EXPECT_TRUE(r.out.empty()) << r;
}

/**
 * Runs portico as nobody (through setpriv) with only `bin/` inside the test directory on
 * PATH, so the test decides whether sudo exists; the system store tools are still found in
 * sbin. Needs root to change user, and a Debian-style system store.
 */
class CaAsUserTest : public CaTest {
protected:
    void SetUp() override
    {
        CaTest::SetUp();
        setpriv_ = portico::cli::find_program("setpriv");
        if (::geteuid() != 0 || !setpriv_) {
            GTEST_SKIP() << "needs root and setpriv (util-linux) to run portico as nobody";
        }
        if (!fs::is_directory(fs::path(debian_anchor_dir)) ||
            !portico::cli::find_program("update-ca-certificates")) {
            GTEST_SKIP() << "not a Debian-style system store (update-ca-certificates)";
        }
        fs::create_directories(dir_ / "bin");
        for (const auto& entry : fs::recursive_directory_iterator(dir_)) {
            ASSERT_EQ(::chown(entry.path().c_str(), nobody, nobody), 0) << entry.path();
        }
        ASSERT_EQ(::chown(dir_.c_str(), nobody, nobody), 0);
        if (!as_nobody({"version"}).succeeded()) {
            GTEST_SKIP() << "nobody cannot run " << binary() << " from its build tree";
        }
    }

    process_result as_nobody(std::vector<std::string> args)
    {
        args.insert(args.begin(), {setpriv_->string(), "--reuid=65534", "--regid=65534",
                                   "--clear-groups", binary()});
        const auto env = portico::test::child_environment({{"HOME", dir_.string()},
                                                           {"PATH", (dir_ / "bin").string()},
                                                           {"PORTICO_CONFIG", std::nullopt},
                                                           {"PORTICO_TRUST_STORES", "system"}});
        return portico::test::run_process(args, dir_, env, store_deadline);
    }

    static constexpr unsigned nobody = 65534;
    std::optional<fs::path> setpriv_;
};

// Without root or sudo the user is told why the system store is left alone and what to run
// as root instead, and the install goes on.
TEST_F(CaAsUserTest, SystemStoreIsSkippedWithoutSudo)
{
    const auto r = as_nobody({"ca", "install", "-c", "portico.yaml"});
    ASSERT_EQ(r.exit_code, 0) << r;
    EXPECT_TRUE(contains(r.out, "skipped: system store (/usr/local/share/ca-certificates/"
                                "portico-nobody.crt) (root is needed and sudo is not installed; "
                                "as root, run: "))
        << r;
    EXPECT_TRUE(contains(r.out, "update-ca-certificates)\n")) << r;
    EXPECT_FALSE(fs::exists(fs::path(debian_anchor_dir) / "portico-nobody.crt"));
    EXPECT_TRUE(contains(r.out, "export REQUESTS_CA_BUNDLE=" + ca_pem().string())) << r;
}

// With sudo, each command is announced and run through it. This sudo runs the command without
// becoming root, so the store's own refusal shows how a failed step is reported: exit 1 with
// the command and its stderr.
TEST_F(CaAsUserTest, SystemStoreGoesThroughSudo)
{
    const auto sudo =
        write_file("bin/sudo", "#!/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin exec \"$@\"\n");
    fs::permissions(sudo, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
    ASSERT_EQ(::chown(sudo.c_str(), nobody, nobody), 0);

    const auto r = as_nobody({"ca", "install", "-c", "portico.yaml"});
    EXPECT_EQ(r.exit_code, 1) << r;
    const auto note =
        "note: running through sudo, which may ask for your password: " + sudo.string() + " ";
    EXPECT_TRUE(contains(r.out, note)) << r;
    EXPECT_TRUE(contains(r.err, "failed: system store (/usr/local/share/ca-certificates/"
                                "portico-nobody.crt): '" +
                                    sudo.string() + " "))
        << r;
    EXPECT_TRUE(contains(r.err, "Permission denied")) << r; // what the command said
    EXPECT_FALSE(fs::exists(fs::path(debian_anchor_dir) / "portico-nobody.crt"));
}

/// Runs a function when it goes out of scope.
struct scope_exit {
    std::function<void()> run;
    ~scope_exit() { run(); }
};

/**
 * Holds an exclusive lock for the whole test, so that test runs from several build trees on
 * one machine never change the system store at the same time.
 */
class system_store_lock {
public:
    system_store_lock() : fd_(::open("/tmp/portico-system-store-test.lock", O_CREAT | O_RDWR, 0600))
    {
        if (fd_ >= 0) {
            ::flock(fd_, LOCK_EX);
        }
    }
    ~system_store_lock()
    {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    system_store_lock(const system_store_lock&) = delete;
    system_store_lock& operator=(const system_store_lock&) = delete;

private:
    int fd_;
};

// The real Debian system store, round trip. Trusting this CA for a moment is harmless: its
// name constraints limit it to localhost, test and loopback addresses.
TEST_F(CaTest, SystemStoreRoundTripAsRoot)
{
    if (::geteuid() != 0) {
        GTEST_SKIP() << "changing the system store needs root";
    }
    if (!fs::is_directory(fs::path(debian_anchor_dir)) ||
        !portico::cli::find_program("update-ca-certificates")) {
        GTEST_SKIP() << "not a Debian-style system store (update-ca-certificates)";
    }
    const system_store_lock lock;
    const auto user = lines_of(tool({"id", "-un"}).out).at(0);
    const auto anchor = fs::path(debian_anchor_dir) / ("portico-" + user + ".crt");
    if (fs::exists(anchor)) {
        GTEST_SKIP() << anchor << " exists: a real portico CA is trusted here; not touching it";
    }
    // Whatever fails below, the machine is left as it was.
    const scope_exit restore{[&] {
        if (fs::exists(anchor)) {
            ca("uninstall", "system");
        }
    }};

    const auto installed = ca("install", "system");
    ASSERT_EQ(installed.exit_code, 0) << installed;
    EXPECT_TRUE(contains(installed.out, "installed: system store (" + anchor.string() + ")\n"))
        << installed;
    EXPECT_FALSE(contains(installed.out, "sudo")) << installed;
    EXPECT_EQ(mode_of(anchor), 0644U);
    const auto pem = normalized_pem(read_file(ca_pem()));
    EXPECT_TRUE(contains(read_file(fs::path(debian_bundle)), pem));
    // The bundle now holds the CA and the public roots: that is what to point tools at.
    EXPECT_TRUE(
        contains(installed.out, "export REQUESTS_CA_BUNDLE=" + std::string(debian_bundle) + "\n"))
        << installed;
    EXPECT_TRUE(contains(installed.out, "export NODE_EXTRA_CA_CERTS=" + ca_pem().string() + "\n"))
        << installed;

    const auto again = ca("install", "system");
    ASSERT_EQ(again.exit_code, 0) << again;
    EXPECT_TRUE(contains(again.out, "already installed: system store (" + anchor.string() + ")"))
        << again;

    const auto removed = ca("uninstall", "system");
    ASSERT_EQ(removed.exit_code, 0) << removed;
    EXPECT_TRUE(contains(removed.out, "removed: system store (" + anchor.string() + ")\n"))
        << removed;
    EXPECT_FALSE(fs::exists(anchor));
    EXPECT_FALSE(contains(read_file(fs::path(debian_bundle)), pem));
    // No link to the removed file is left where OpenSSL's hashed lookup would find it.
    for (const auto& entry : fs::directory_iterator(fs::path(debian_bundle).parent_path())) {
        if (entry.is_symlink()) {
            EXPECT_FALSE(contains(fs::read_symlink(entry.path()).string(), "portico-" + user))
                << entry.path();
        }
    }

    const auto removed_again = ca("uninstall", "system");
    ASSERT_EQ(removed_again.exit_code, 0) << removed_again;
    EXPECT_TRUE(
        contains(removed_again.out, "not installed: system store (" + anchor.string() + ")"))
        << removed_again;
}

} // namespace
