#include "portico/core/log.hpp"
#include "portico/tls/certificates.hpp"

#include "tls/openssl.hpp"
#include "unit/tls/tls_test_support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace portico::tls {
namespace {

using testing::client_options;
using testing::first_certificate;
using testing::handshake_outcome;
using testing::list_dir;
using testing::mode_of;
using testing::serial_of;
using testing::slurp;
using testing::spit;
using testing::temp_dir;

const std::string alpn_h2_and_http11("\x02h2\x08http/1.1", 12);

/// Serves the names in `hosts`, like a route table would.
certificate_manager::name_filter serve(std::set<std::string> hosts)
{
    return [hosts = std::move(hosts)](std::string_view name) {
        return hosts.count(std::string(name)) != 0;
    };
}

class CertificateManagerTest : public ::testing::Test {
protected:
    config::tls_settings settings() const
    {
        config::tls_settings s;
        s.ca_dir = tmp_ / "ca";
        return s;
    }

    std::unique_ptr<certificate_manager> make(const config::tls_settings& s,
                                              certificate_manager::name_filter filter,
                                              const issuance_policy& policy = {})
    {
        std::string error;
        auto manager = certificate_manager::create(s, std::move(filter), error, policy);
        EXPECT_TRUE(manager) << error;
        return manager;
    }

    std::unique_ptr<certificate_manager> make(const issuance_policy& policy = {})
    {
        return make(settings(), serve({"app.localhost", "race.localhost", "portico.localhost"}),
                    policy);
    }

    /// A handshake by a client that trusts the manager's CA and checks the host name.
    handshake_outcome handshake(certificate_manager& m, const std::string& sni,
                                client_options options = {})
    {
        options.sni = sni;
        if (options.context == nullptr && options.trusted_ca_pem.empty()) {
            options.trusted_ca_pem = m.authority().certificate_pem();
        }
        return testing::run_handshake(m.server_context().native_handle(), options);
    }

    std::filesystem::path leaves() const { return tmp_ / "ca/leaves"; }

    /// Writes a certificate and key issued by a separate CA, as a user would provide them.
    config::user_certificate user_cert(const std::string& name, std::vector<std::string> hosts,
                                       const issuance_policy& policy = {})
    {
        std::string error;
        const auto other = certificate_authority::open(tmp_ / "other-ca", {"localhost"}, error);
        EXPECT_TRUE(other) << error;
        const auto leaf = other->issue(name, policy);
        config::user_certificate entry;
        entry.hosts = std::move(hosts);
        entry.cert = tmp_ / (name + ".pem");
        entry.key = tmp_ / (name + "-key.pem");
        spit(entry.cert, leaf.certificate_pem);
        spit(entry.key, leaf.key_pem);
        return entry;
    }

    temp_dir tmp_;
};

TEST_F(CertificateManagerTest, SniGetsAnIssuedLeafThatVerifies)
{
    const auto m = make();
    ASSERT_TRUE(m);
    const auto out = handshake(*m, "app.localhost");
    ASSERT_TRUE(out.ok);
    EXPECT_EQ(X509_check_host(out.peer.get(), "app.localhost", 0, 0, nullptr), 1);
    EXPECT_EQ(out.server_name, "app.localhost");
    EXPECT_EQ(out.peer_chain_length, 1); // the CA is the client's trust anchor, not sent
    EXPECT_EQ(m->certificates_issued(), 1u);
    EXPECT_EQ(list_dir(leaves()),
              (std::vector<std::string>{"app.localhost-key.pem", "app.localhost.pem"}));
    EXPECT_EQ(mode_of(leaves()), 0700u);
    EXPECT_EQ(mode_of(leaves() / "app.localhost-key.pem"), 0600u);
    const x509_ptr on_disk = first_certificate(slurp(leaves() / "app.localhost.pem"));
    EXPECT_EQ(X509_cmp(on_disk.get(), out.peer.get()), 0);
}

TEST_F(CertificateManagerTest, SecondHandshakeReusesTheLeaf)
{
    const auto m = make();
    ASSERT_TRUE(m);
    const auto first = handshake(*m, "app.localhost");
    const auto second = handshake(*m, "APP.localhost.");
    ASSERT_TRUE(first.ok);
    ASSERT_TRUE(second.ok);
    EXPECT_EQ(serial_of(first.peer.get()), serial_of(second.peer.get()));
    EXPECT_EQ(m->certificates_issued(), 1u);
}

TEST_F(CertificateManagerTest, NoSniGetsLocalhost)
{
    const auto m = make(settings(), serve({}));
    ASSERT_TRUE(m);
    const auto out = handshake(*m, "");
    ASSERT_TRUE(out.ok);
    EXPECT_EQ(X509_check_host(out.peer.get(), "localhost", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_check_ip_asc(out.peer.get(), "127.0.0.1", 0), 1);
    EXPECT_EQ(X509_check_ip_asc(out.peer.get(), "::1", 0), 1);
    EXPECT_EQ(out.server_name, "");
}

TEST_F(CertificateManagerTest, SniNamingAnAddressGetsTheLocalhostLeafOrIsRefused)
{
    // RFC 6066 allows no address as a server name, yet some clients send one. The localhost
    // leaf's own addresses get that leaf; any other would have had a leaf (and two files) of
    // its own for each of the 16 million addresses of 127.0.0.0/8 that plain HTTP serves.
    const auto m = make(settings(), [](std::string_view) { return true; });
    ASSERT_TRUE(m);
    for (const std::string address : {"127.0.0.1", "::1"}) {
        const auto out = handshake(*m, address);
        ASSERT_TRUE(out.ok) << address;
        EXPECT_EQ(X509_check_host(out.peer.get(), "localhost", 0, 0, nullptr), 1) << address;
        EXPECT_EQ(X509_check_ip_asc(out.peer.get(), address.c_str(), 0), 1) << address;
    }
    EXPECT_EQ(m->certificates_issued(), 1u); // the localhost leaf, once
    for (const std::string address : {"127.5.5.5", "10.0.0.1", "::2"}) {
        const auto out = handshake(*m, address);
        EXPECT_FALSE(out.ok) << address;
        EXPECT_EQ(out.alert_received, SSL_AD_UNRECOGNIZED_NAME) << address;
    }
    EXPECT_EQ(m->certificates_issued(), 1u);
    EXPECT_EQ(list_dir(leaves()).size(), 2u); // localhost.pem and its key
}

TEST_F(CertificateManagerTest, CaWithoutLocalhostServesAnAddressLeafThatVerifies)
{
    // A leaf naming localhost under a CA that does not permit it verifies nowhere; the one
    // for 127.0.0.1, [::1] and no SNI names the addresses alone.
    auto s = settings();
    s.ca_permitted_names = {"test"};
    const auto m = make(s, serve({}));
    ASSERT_TRUE(m);
    const auto out = handshake(*m, "");
    ASSERT_TRUE(out.ok) << "the client trusting the CA refused the leaf";
    EXPECT_NE(X509_check_host(out.peer.get(), "localhost", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_check_ip_asc(out.peer.get(), "127.0.0.1", 0), 1);
    EXPECT_EQ(X509_check_ip_asc(out.peer.get(), "::1", 0), 1);
    // Written, it is read back on the next start rather than issued again.
    const auto next = make(s, serve({}));
    ASSERT_TRUE(next);
    EXPECT_TRUE(handshake(*next, "").ok);
    EXPECT_EQ(next->certificates_issued(), 0u);
}

TEST_F(CertificateManagerTest, ExpiredUserCertificateIsWarnedAboutAtItsCertValue)
{
    auto s = settings();
    s.certificates.push_back(user_cert("fresh.example", {"fresh.example"}));
    s.certificates.push_back(
        user_cert("old.example", {"old.example"}, {std::chrono::hours(-48), std::chrono::hours(0)}));
    s.certificates.back().cert_at = config::source_location{"portico.yaml", 9, 13};
    const auto report = check_user_certificates(s);
    EXPECT_TRUE(report.errors.empty());
    ASSERT_EQ(report.warnings.size(), 1u);
    EXPECT_EQ(report.warnings[0].where.line, 9);
    EXPECT_NE(report.warnings[0].message.find("old.example.pem expired on "), std::string::npos)
        << report.warnings[0].message;
    EXPECT_NE(report.warnings[0].message.find("clients will refuse it"), std::string::npos);
}

TEST_F(CertificateManagerTest, SniThatIsNoValidHostNameGetsNoLeaf)
{
    // A route table that takes any name, as a wildcard route nearly does.
    const auto m = make(settings(), [](std::string_view) { return true; });
    ASSERT_TRUE(m);
    const std::vector<std::string> names{"app.localhost..", "a..localhost", "a b.localhost",
                                         ".localhost", "a.localhost:443"};
    for (const auto& name : names) {
        const auto out = handshake(*m, name);
        EXPECT_FALSE(out.ok) << name;
        EXPECT_EQ(out.alert_received, SSL_AD_UNRECOGNIZED_NAME) << name;
    }
    EXPECT_EQ(m->certificates_issued(), 0u);
    EXPECT_TRUE(list_dir(leaves()).empty());
    EXPECT_TRUE(handshake(*m, "app.localhost.").ok);
    // What plain HTTP serves under a wildcard route: an underscore, a long label.
    EXPECT_TRUE(handshake(*m, "my_app.localhost").ok);
    EXPECT_TRUE(handshake(*m, std::string(64, 'a') + ".localhost").ok);
}

TEST_F(CertificateManagerTest, RefusedNameGetsUnrecognizedNameAndNoFile)
{
    const auto m = make();
    ASSERT_TRUE(m);
    const auto out = handshake(*m, "unrouted.localhost");
    EXPECT_FALSE(out.ok);
    EXPECT_EQ(out.alert_received, SSL_AD_UNRECOGNIZED_NAME);
    EXPECT_EQ(m->certificates_issued(), 0u);
    EXPECT_TRUE(list_dir(leaves()).empty());
}

TEST_F(CertificateManagerTest, NameOutsideTheConstraintsIsRefused)
{
    const auto m = make(settings(), [](std::string_view) { return true; });
    ASSERT_TRUE(m);
    const auto out = handshake(*m, "example.com");
    EXPECT_FALSE(out.ok);
    EXPECT_EQ(out.alert_received, SSL_AD_UNRECOGNIZED_NAME);
    EXPECT_TRUE(list_dir(leaves()).empty());
}

TEST_F(CertificateManagerTest, NewNameFilterTakesEffect)
{
    const auto m = make(settings(), serve({}));
    ASSERT_TRUE(m);
    EXPECT_FALSE(handshake(*m, "new.localhost").ok);
    m->set_name_filter(serve({"new.localhost"}));
    EXPECT_TRUE(handshake(*m, "new.localhost").ok);
    m->set_name_filter(serve({}));
    EXPECT_FALSE(handshake(*m, "new.localhost").ok);
}

TEST_F(CertificateManagerTest, RacingHandshakesIssueOneCertificate)
{
    const auto m = make();
    ASSERT_TRUE(m);
    constexpr int racers = 4;
    std::vector<std::string> serials(racers);
    std::vector<std::thread> threads;
    for (int i = 0; i < racers; ++i) {
        threads.emplace_back([&, i] {
            const auto out = handshake(*m, "race.localhost");
            serials[i] = out.ok ? serial_of(out.peer.get()) : "failed";
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    for (const auto& serial : serials) {
        EXPECT_EQ(serial, serials.front());
    }
    EXPECT_NE(serials.front(), "failed");
    EXPECT_EQ(m->certificates_issued(), 1u);
    EXPECT_EQ(list_dir(leaves()),
              (std::vector<std::string>{"race.localhost-key.pem", "race.localhost.pem"}));
}

/// The leaf files `names` leave in `leaves/`, sorted as `list_dir` sorts.
std::vector<std::string> leaf_files(std::vector<std::string> names)
{
    std::vector<std::string> files;
    for (const auto& name : names) {
        files.push_back(name + "-key.pem");
        files.push_back(name + ".pem");
    }
    std::sort(files.begin(), files.end());
    return files;
}

/// Names below a wildcard, as a page could make a browser ask for: every one is served.
certificate_manager::name_filter serve_any_localhost()
{
    return [](std::string_view name) { return name.ends_with(".localhost"); };
}

TEST_F(CertificateManagerTest, IssuedLeavesAreBoundedInMemoryAndOnDisk)
{
    issuance_policy three;
    three.max_leaves = 3;
    const auto m = make(settings(), serve_any_localhost(), three);
    ASSERT_TRUE(m);
    for (int i = 0; i < 6; ++i) {
        ASSERT_TRUE(handshake(*m, "n" + std::to_string(i) + ".localhost").ok) << i;
    }
    EXPECT_EQ(m->certificates_issued(), 6u);
    EXPECT_EQ(list_dir(leaves()), leaf_files({"n3.localhost", "n4.localhost", "n5.localhost"}));
    ASSERT_TRUE(handshake(*m, "n5.localhost").ok);
    EXPECT_EQ(m->certificates_issued(), 6u); // still in memory
    const auto again = handshake(*m, "n0.localhost");
    ASSERT_TRUE(again.ok); // dropped from both: issued anew, and it verifies
    EXPECT_EQ(m->certificates_issued(), 7u);
    EXPECT_EQ(list_dir(leaves()), leaf_files({"n0.localhost", "n4.localhost", "n5.localhost"}));
}

TEST_F(CertificateManagerTest, PruningLeavesRoomSoTheNextIssuancesNeedNotReadTheDirectory)
{
    issuance_policy ten;
    ten.max_leaves = 10;
    const auto m = make(settings(), serve_any_localhost(), ten);
    ASSERT_TRUE(m);
    std::vector<std::string> names;
    for (int i = 0; i < 11; ++i) {
        names.push_back("n" + std::to_string(i) + ".localhost");
        ASSERT_TRUE(handshake(*m, names.back()).ok) << i;
    }
    // The eleventh name passed the bound: the two oldest went, a tenth below it.
    EXPECT_EQ(list_dir(leaves()), leaf_files({names.begin() + 2, names.end()}));
}

TEST_F(CertificateManagerTest, LeafInUseOutlivesAFloodOfNewNames)
{
    issuance_policy three;
    three.max_leaves = 3;
    const auto m = make(settings(), serve_any_localhost(), three);
    ASSERT_TRUE(m);
    const auto first = handshake(*m, "app.localhost");
    ASSERT_TRUE(first.ok);
    for (int i = 0; i < 8; ++i) {
        ASSERT_TRUE(handshake(*m, "flood" + std::to_string(i) + ".localhost").ok) << i;
        ASSERT_TRUE(handshake(*m, "app.localhost").ok) << i; // the page the developer uses
    }
    const auto last = handshake(*m, "app.localhost");
    ASSERT_TRUE(last.ok);
    EXPECT_EQ(serial_of(last.peer.get()), serial_of(first.peer.get()));
    EXPECT_EQ(m->certificates_issued(), 9u);
    EXPECT_EQ(list_dir(leaves()),
              leaf_files({"app.localhost", "flood6.localhost", "flood7.localhost"}));
}

TEST_F(CertificateManagerTest, RestartPrunesOnlyTheOldestLeavesOnDisk)
{
    issuance_policy three;
    three.max_leaves = 3;
    {
        const auto m = make(settings(), serve_any_localhost(), three);
        ASSERT_TRUE(m);
        for (int i = 0; i < 3; ++i) {
            ASSERT_TRUE(handshake(*m, "n" + std::to_string(i) + ".localhost").ok) << i;
        }
    }
    const auto m = make(settings(), serve_any_localhost(), three);
    ASSERT_TRUE(m);
    ASSERT_TRUE(handshake(*m, "n3.localhost").ok);
    EXPECT_EQ(list_dir(leaves()), leaf_files({"n1.localhost", "n2.localhost", "n3.localhost"}));
    ASSERT_TRUE(handshake(*m, "n2.localhost").ok);
    EXPECT_EQ(m->certificates_issued(), 1u); // read back from disk
}

TEST_F(CertificateManagerTest, LeafOfTheLongestNameIsSavedAndReadBack)
{
    // 253 characters, the most a DNS name has: "-key.pem" after it would pass the 255
    // bytes a file name may have.
    const std::string label(60, 'x');
    const std::string name = label + "." + label + "." + label + "." + label + ".localhost";
    ASSERT_EQ(name.size(), 253u);
    {
        const auto m = make(settings(), serve_any_localhost());
        ASSERT_TRUE(m);
        ASSERT_TRUE(handshake(*m, name).ok);
    }
    const auto files = list_dir(leaves());
    ASSERT_EQ(files.size(), 2u);
    for (const auto& file : files) {
        EXPECT_LE(file.size(), 255u) << file;
        EXPECT_TRUE(file.starts_with(label + ".")) << file;
    }
    const auto m = make(settings(), serve_any_localhost());
    ASSERT_TRUE(m);
    const auto out = handshake(*m, name);
    ASSERT_TRUE(out.ok);
    EXPECT_EQ(X509_check_host(out.peer.get(), name.c_str(), name.size(), 0, nullptr), 1);
    EXPECT_EQ(m->certificates_issued(), 0u); // read back from its file
}

TEST_F(CertificateManagerTest, RestartReusesTheLeaf)
{
    std::string serial;
    {
        const auto m = make();
        ASSERT_TRUE(m);
        const auto out = handshake(*m, "app.localhost");
        ASSERT_TRUE(out.ok);
        serial = serial_of(out.peer.get());
    }
    const std::string key = slurp(leaves() / "app.localhost-key.pem");
    const auto m = make();
    ASSERT_TRUE(m);
    const auto out = handshake(*m, "app.localhost");
    ASSERT_TRUE(out.ok);
    EXPECT_EQ(serial_of(out.peer.get()), serial);
    EXPECT_EQ(m->certificates_issued(), 0u);
    EXPECT_EQ(slurp(leaves() / "app.localhost-key.pem"), key);
}

TEST_F(CertificateManagerTest, LeafOnDiskNearExpiryIsReissued)
{
    const issuance_policy short_lived{std::chrono::hours(3), std::chrono::hours(0)};
    std::string serial;
    {
        const auto m = make(short_lived);
        ASSERT_TRUE(m);
        const auto out = handshake(*m, "app.localhost");
        ASSERT_TRUE(out.ok);
        serial = serial_of(out.peer.get());
    }
    // Two hours remain, renewal is due when fewer than three do.
    const auto m = make({std::chrono::hours(24 * 90), std::chrono::hours(3)});
    ASSERT_TRUE(m);
    const auto out = handshake(*m, "app.localhost");
    ASSERT_TRUE(out.ok);
    EXPECT_NE(serial_of(out.peer.get()), serial);
    EXPECT_EQ(m->certificates_issued(), 1u);
    const x509_ptr on_disk = first_certificate(slurp(leaves() / "app.localhost.pem"));
    EXPECT_EQ(serial_of(on_disk.get()), serial_of(out.peer.get()));
}

TEST_F(CertificateManagerTest, ExpiredLeafOnDiskIsReissuedAsDueAndExposedKeyIsMadePrivate)
{
    const auto serve_both = [] { return serve({"old.localhost", "open.localhost"}); };
    {
        const auto m = make(settings(), serve_both(), {std::chrono::hours(0), std::chrono::hours(0)});
        ASSERT_TRUE(m);
        handshake(*m, "old.localhost"); // born expired: the client refuses it
    }
    {
        const auto m = make(settings(), serve_both());
        ASSERT_TRUE(m);
        ASSERT_TRUE(handshake(*m, "open.localhost").ok);
    }
    ASSERT_TRUE(std::filesystem::exists(leaves() / "old.localhost.pem"));
    const auto open_key = leaves() / "open.localhost-key.pem";
    std::filesystem::permissions(open_key, std::filesystem::perms::others_read,
                                 std::filesystem::perm_options::add);
    log::configure(log::level::info, log::format::text); // the default, said for the reader
    ::testing::internal::CaptureStderr();
    const auto m = make(settings(), serve_both());
    ASSERT_TRUE(m);
    EXPECT_TRUE(handshake(*m, "old.localhost").ok);
    EXPECT_TRUE(handshake(*m, "open.localhost").ok);
    const auto logged = ::testing::internal::GetCapturedStderr();
    // An expired leaf fails verification too; what is wrong with it is its age.
    EXPECT_NE(logged.find("host=old.localhost reason=\"due for renewal\""), std::string::npos)
        << logged;
    EXPECT_EQ(logged.find("name constraints"), std::string::npos) << logged;
    // A key others could read is made private again and the leaf kept.
    EXPECT_EQ(logged.find("host=open.localhost"), std::string::npos) << logged;
    EXPECT_EQ(std::filesystem::status(open_key).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    EXPECT_EQ(m->certificates_issued(), 1u);
}

TEST_F(CertificateManagerTest, CachedLeafNearExpiryIsRenewed)
{
    // Every leaf is due for renewal as soon as it is issued: a process that runs for months
    // sees the same once its leaf gets old.
    const auto m = make({std::chrono::hours(3), std::chrono::hours(3)});
    ASSERT_TRUE(m);
    const auto first = handshake(*m, "app.localhost");
    const auto second = handshake(*m, "app.localhost");
    ASSERT_TRUE(first.ok);
    ASSERT_TRUE(second.ok);
    EXPECT_NE(serial_of(first.peer.get()), serial_of(second.peer.get()));
    EXPECT_EQ(m->certificates_issued(), 2u);
}

TEST_F(CertificateManagerTest, DamagedLeafOnDiskIsReissued)
{
    {
        const auto m = make();
        ASSERT_TRUE(m);
        ASSERT_TRUE(handshake(*m, "app.localhost").ok);
    }
    spit(leaves() / "app.localhost.pem", "garbage");
    const auto m = make();
    ASSERT_TRUE(m);
    EXPECT_TRUE(handshake(*m, "app.localhost").ok);
    EXPECT_EQ(m->certificates_issued(), 1u);
    EXPECT_FALSE(first_certificate(slurp(leaves() / "app.localhost.pem")) == nullptr);
}

TEST_F(CertificateManagerTest, LeafFromAnotherCaOnDiskIsReissued)
{
    const auto foreign = user_cert("app.localhost", {});
    std::filesystem::create_directories(leaves());
    std::filesystem::copy_file(foreign.cert, leaves() / "app.localhost.pem");
    std::filesystem::copy_file(foreign.key, leaves() / "app.localhost-key.pem");
    const auto m = make();
    ASSERT_TRUE(m);
    EXPECT_TRUE(handshake(*m, "app.localhost").ok); // the client trusts only this CA
    EXPECT_EQ(m->certificates_issued(), 1u);
}

TEST_F(CertificateManagerTest, UserCertificateWinsOverIssued)
{
    auto s = settings();
    s.certificates.push_back(user_cert("app.localhost", {"app.localhost"}));
    const auto m = make(s, serve({"app.localhost"}));
    ASSERT_TRUE(m);
    client_options no_verify;
    no_verify.trusted_ca_pem = "";
    const ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
    no_verify.context = ctx.get();
    const auto out = handshake(*m, "app.localhost", no_verify);
    ASSERT_TRUE(out.ok);
    const x509_ptr user = first_certificate(slurp(s.certificates[0].cert));
    EXPECT_EQ(X509_cmp(out.peer.get(), user.get()), 0);
    EXPECT_EQ(m->certificates_issued(), 0u);
    EXPECT_TRUE(list_dir(leaves()).empty());
}

TEST_F(CertificateManagerTest, UserWildcardCertificateCoversOneLabel)
{
    // Outside the CA's names and not in the filter: only the user certificate serves it.
    auto s = settings();
    s.certificates.push_back(user_cert("wild.example", {"*.wild.example"}));
    const auto m = make(s, serve({}));
    ASSERT_TRUE(m);
    const ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
    client_options no_verify;
    no_verify.context = ctx.get();
    const auto out = handshake(*m, "a.wild.example", no_verify);
    ASSERT_TRUE(out.ok);
    const x509_ptr user = first_certificate(slurp(s.certificates[0].cert));
    EXPECT_EQ(X509_cmp(out.peer.get(), user.get()), 0);
    EXPECT_EQ(handshake(*m, "b.a.wild.example", no_verify).alert_received,
              SSL_AD_UNRECOGNIZED_NAME);
    EXPECT_EQ(handshake(*m, "wild.example", no_verify).alert_received, SSL_AD_UNRECOGNIZED_NAME);
    // A label no host name has is not one the wildcard covers.
    EXPECT_EQ(handshake(*m, "a b.wild.example", no_verify).alert_received,
              SSL_AD_UNRECOGNIZED_NAME);
}

TEST_F(CertificateManagerTest, MismatchedUserKeyIsAnError)
{
    auto s = settings();
    auto entry = user_cert("one.localhost", {"one.localhost"});
    entry.key = user_cert("two.localhost", {}).key;
    entry.where = {"portico.yaml", 12, 7};
    s.certificates.push_back(entry);
    std::string error;
    EXPECT_FALSE(certificate_manager::create(s, serve({}), error));
    EXPECT_NE(error.find("portico.yaml:12:7"), std::string::npos) << error;
    EXPECT_NE(error.find(entry.key.string()), std::string::npos) << error;
    EXPECT_NE(error.find("does not belong"), std::string::npos) << error;
}

TEST_F(CertificateManagerTest, MissingUserCertificateIsAnError)
{
    auto s = settings();
    config::user_certificate entry;
    entry.hosts = {"legacy.test"};
    entry.cert = tmp_ / "absent.pem";
    entry.key = tmp_ / "absent-key.pem";
    s.certificates.push_back(entry);
    std::string error;
    EXPECT_FALSE(certificate_manager::create(s, serve({}), error));
    EXPECT_NE(error.find("absent.pem"), std::string::npos) << error;
}

TEST_F(CertificateManagerTest, DamagedCaIsAnError)
{
    ASSERT_TRUE(make());
    spit(tmp_ / "ca/ca.pem", "garbage");
    std::string error;
    EXPECT_FALSE(certificate_manager::create(settings(), serve({}), error));
    EXPECT_NE(error.find("ca.pem"), std::string::npos) << error;
}

TEST_F(CertificateManagerTest, Tls11ClientIsRefused)
{
    const auto m = make();
    ASSERT_TRUE(m);
    client_options old;
    old.min_version = TLS1_VERSION;
    old.max_version = TLS1_1_VERSION;
    const auto out = handshake(*m, "app.localhost", old);
    EXPECT_FALSE(out.ok);
    EXPECT_EQ(out.alert_received, SSL_AD_PROTOCOL_VERSION);
}

TEST_F(CertificateManagerTest, Tls12AndTls13AreAccepted)
{
    const auto m = make();
    ASSERT_TRUE(m);
    client_options tls12;
    tls12.max_version = TLS1_2_VERSION;
    const auto out12 = handshake(*m, "app.localhost", tls12);
    ASSERT_TRUE(out12.ok);
    EXPECT_EQ(out12.version, TLS1_2_VERSION);
    EXPECT_EQ(out12.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
    const auto out13 = handshake(*m, "app.localhost");
    ASSERT_TRUE(out13.ok);
    EXPECT_EQ(out13.version, TLS1_3_VERSION);
}

TEST_F(CertificateManagerTest, CbcAndRsaKeyExchangeAreRefused)
{
    const auto m = make();
    ASSERT_TRUE(m);
    for (const char* ciphers : {"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384",
                                "AES128-GCM-SHA256:AES256-GCM-SHA384"}) {
        client_options weak;
        weak.max_version = TLS1_2_VERSION;
        weak.cipher_list = ciphers;
        const auto out = handshake(*m, "app.localhost", weak);
        EXPECT_FALSE(out.ok) << ciphers;
        EXPECT_EQ(out.alert_received, SSL_AD_HANDSHAKE_FAILURE) << ciphers;
    }
}

TEST_F(CertificateManagerTest, AlpnSelectsHttp11)
{
    const auto m = make();
    ASSERT_TRUE(m);
    client_options offer;
    offer.alpn_wire = alpn_h2_and_http11;
    const auto out = handshake(*m, "app.localhost", offer);
    ASSERT_TRUE(out.ok);
    EXPECT_EQ(out.alpn, "http/1.1");
}

TEST_F(CertificateManagerTest, ClientOfferingOnlyH2GetsNoApplicationProtocolAlert)
{
    const auto m = make();
    ASSERT_TRUE(m);
    client_options offer;
    offer.alpn_wire = std::string("\x02h2", 3);
    const auto out = handshake(*m, "app.localhost", offer);
    EXPECT_FALSE(out.ok);
    EXPECT_EQ(out.alert_received, SSL_AD_NO_APPLICATION_PROTOCOL);
}

TEST_F(CertificateManagerTest, AlpnSelectsHttp10ForAClientOfferingOnlyIt)
{
    const auto m = make();
    ASSERT_TRUE(m);
    client_options offer;
    offer.alpn_wire = std::string("\x08http/1.0", 9);
    const auto out = handshake(*m, "app.localhost", offer);
    ASSERT_TRUE(out.ok);
    EXPECT_EQ(out.alpn, "http/1.0");
}

TEST_F(CertificateManagerTest, SessionsAreResumedUnderTheirOwnNameOnly)
{
    // RFC 6066 §3: a session made for one name is not resumed under another; the handshake
    // is a full one, with that name's own certificate (and its own SNI check).
    const auto m = make();
    ASSERT_TRUE(m);
    for (const int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
        client_options options;
        options.max_version = version;
        const auto first = handshake(*m, "app.localhost", options);
        ASSERT_TRUE(first.ok);
        ASSERT_TRUE(first.session);
        EXPECT_FALSE(first.reused);
        options.resume = first.session.get();
        const auto second = handshake(*m, "app.localhost", options);
        ASSERT_TRUE(second.ok);
        EXPECT_TRUE(second.reused) << version;
        const auto other = handshake(*m, "race.localhost", options);
        ASSERT_TRUE(other.ok) << version;
        EXPECT_FALSE(other.reused) << version;
        EXPECT_EQ(X509_check_host(other.peer.get(), "race.localhost", 0, 0, nullptr), 1);
        const auto unrouted = handshake(*m, "unrouted.localhost", options);
        EXPECT_FALSE(unrouted.ok) << version;
        EXPECT_EQ(unrouted.alert_received, SSL_AD_UNRECOGNIZED_NAME) << version;
    }
}

TEST_F(CertificateManagerTest, ClientContextTrustsTheLocalCa)
{
    const auto m = make();
    ASSERT_TRUE(m);
    client_options verified;
    verified.context = m->client_context(true).native_handle();
    EXPECT_TRUE(handshake(*m, "app.localhost", verified).ok);

    // A server whose CA this manager does not know: refused when verifying, accepted when not.
    config::tls_settings other;
    other.ca_dir = tmp_ / "elsewhere";
    const auto stranger = make(other, serve({"app.localhost"}));
    ASSERT_TRUE(stranger);
    const auto refused = handshake(*stranger, "app.localhost", verified);
    EXPECT_FALSE(refused.ok);
    client_options unverified;
    unverified.context = m->client_context(false).native_handle();
    EXPECT_TRUE(handshake(*stranger, "app.localhost", unverified).ok);

    client_options old;
    old.context = m->client_context(false).native_handle();
    EXPECT_EQ(SSL_CTX_get_min_proto_version(old.context), TLS1_2_VERSION);
}

} // namespace
} // namespace portico::tls
