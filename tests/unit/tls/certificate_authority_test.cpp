#include "portico/tls/certificates.hpp"

#include "tls/openssl.hpp"
#include "unit/tls/tls_test_support.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace portico::tls {
namespace {

using testing::first_certificate;
using testing::mode_of;
using testing::slurp;
using testing::spit;
using testing::temp_dir;
using testing::verify_leaf;

const std::vector<std::string> default_names{"localhost", "test"};

std::unique_ptr<certificate_authority>
open_ok(const std::filesystem::path& dir, const std::vector<std::string>& names = default_names)
{
    std::string error;
    auto ca = certificate_authority::open(dir, names, error);
    EXPECT_TRUE(ca) << error;
    EXPECT_EQ(error, "");
    return ca;
}

std::string open_error(const std::filesystem::path& dir)
{
    std::string error;
    const auto ca = certificate_authority::open(dir, default_names, error);
    EXPECT_FALSE(ca);
    return error;
}

/// The leaf of a PEM chain, for verification.
x509_ptr leaf_of(const certificate_authority::leaf& leaf)
{
    return first_certificate(leaf.certificate_pem);
}

/// The text of an extension's value, as `openssl x509 -text` prints it.
std::string extension_text(X509* cert, int nid, bool& critical)
{
    const int index = X509_get_ext_by_NID(cert, nid, -1);
    if (index < 0) {
        return {};
    }
    X509_EXTENSION* ext = X509_get_ext(cert, index);
    critical = X509_EXTENSION_get_critical(ext) == 1;
    const bio_ptr bio(BIO_new(BIO_s_mem()));
    X509V3_EXT_print(bio.get(), ext, 0, 0);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
}

std::string subject_field(X509_NAME* name, int nid)
{
    char buffer[256] = {};
    X509_NAME_get_text_by_NID(name, nid, buffer, sizeof buffer);
    return buffer;
}

TEST(CertificateAuthorityTest, CreatesPrivateDirectoryAndKey)
{
    const temp_dir tmp;
    const auto dir = tmp / "share/portico";
    const auto ca = open_ok(dir);
    ASSERT_TRUE(ca);
    EXPECT_EQ(mode_of(dir), 0700u);
    EXPECT_EQ(mode_of(dir / "ca-key.pem"), 0600u);
    EXPECT_EQ(ca->certificate_path(), dir / "ca.pem");
    EXPECT_EQ(slurp(dir / "ca.pem"), ca->certificate_pem());
    EXPECT_EQ(testing::list_dir(dir),
              (std::vector<std::string>{"ca-key.pem", "ca.crl", "ca.pem"}));
    EXPECT_EQ(mode_of(dir / "ca.crl"), 0644u);
}

/// Verifies `leaf` against the CA with CRL checking on, the CRL read from `crl_path`.
int verify_with_crl(X509* leaf, const std::string& ca_pem, const std::filesystem::path& crl_path)
{
    const std::string crl_pem = slurp(crl_path);
    const bio_ptr bio(BIO_new_mem_buf(crl_pem.data(), static_cast<int>(crl_pem.size())));
    const x509_crl_ptr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    return crl ? verify_leaf(leaf, ca_pem, crl.get()) : -1;
}

TEST(CertificateAuthorityTest, LeavesNameTheCrlWhichVerifiesWithCrlChecking)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "my ca,dir");
    ASSERT_TRUE(ca);
    EXPECT_EQ(ca->crl_path(), tmp / "my ca,dir" / "ca.crl");
    // Escaped so that neither the blank nor the comma breaks the extension.
    EXPECT_TRUE(ca->crl_uri().starts_with("file:///")) << ca->crl_uri();
    EXPECT_TRUE(ca->crl_uri().ends_with("/my%20ca%2Cdir/ca.crl")) << ca->crl_uri();
    const auto leaf = leaf_of(ca->issue("app.localhost"));
    bool critical = true;
    EXPECT_EQ(extension_text(leaf.get(), NID_crl_distribution_points, critical),
              "Full Name:\n  URI:" + ca->crl_uri());
    EXPECT_FALSE(critical);
    EXPECT_EQ(verify_with_crl(leaf.get(), ca->certificate_pem(), ca->crl_path()), X509_V_OK);
}

TEST(CertificateAuthorityTest, DamagedOrForeignCrlIsReplaced)
{
    const temp_dir tmp;
    const temp_dir other;
    {
        ASSERT_TRUE(open_ok(tmp / "ca"));
        ASSERT_TRUE(open_ok(other / "ca"));
    }
    const auto kept = slurp(tmp / "ca/ca.crl");
    ASSERT_TRUE(open_ok(tmp / "ca"));
    EXPECT_EQ(slurp(tmp / "ca/ca.crl"), kept) << "a current CRL is left alone";

    spit(tmp / "ca/ca.crl", "garbage");
    auto ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    EXPECT_TRUE(slurp(tmp / "ca/ca.crl").starts_with("-----BEGIN X509 CRL-----"));

    std::filesystem::copy_file(other / "ca/ca.crl", tmp / "ca/ca.crl",
                               std::filesystem::copy_options::overwrite_existing);
    ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    const auto leaf = leaf_of(ca->issue("app.localhost"));
    EXPECT_EQ(verify_with_crl(leaf.get(), ca->certificate_pem(), ca->crl_path()), X509_V_OK);
}

TEST(CertificateAuthorityTest, ReopeningKeepsTheSameCertificate)
{
    const temp_dir tmp;
    std::string first_pem;
    {
        const auto ca = open_ok(tmp / "ca");
        ASSERT_TRUE(ca);
        first_pem = slurp(tmp / "ca/ca.pem");
    }
    const std::string key = slurp(tmp / "ca/ca-key.pem");
    // Different permitted names do not rewrite an existing CA.
    const auto again = open_ok(tmp / "ca", {"example"});
    ASSERT_TRUE(again);
    EXPECT_EQ(slurp(tmp / "ca/ca.pem"), first_pem);
    EXPECT_EQ(slurp(tmp / "ca/ca-key.pem"), key);
    EXPECT_EQ(again->certificate_pem(), first_pem);
    EXPECT_TRUE(again->permits("app.localhost"));
    EXPECT_FALSE(again->permits("app.example"));
}

TEST(CertificateAuthorityTest, TightensLooseDirectoryItOwns)
{
    const temp_dir tmp;
    std::filesystem::create_directory(tmp / "ca");
    std::filesystem::permissions(tmp / "ca", std::filesystem::perms::owner_all |
                                                 std::filesystem::perms::group_all |
                                                 std::filesystem::perms::others_read);
    ASSERT_TRUE(open_ok(tmp / "ca"));
    EXPECT_EQ(mode_of(tmp / "ca"), 0700u);
}

TEST(CertificateAuthorityTest, DirectoryHoldingOtherFilesIsRefusedAndLeftAlone)
{
    // `ca_dir: .` in a project, or `~`: not made private, and no key written into it.
    const temp_dir tmp;
    const auto project = tmp / "project";
    std::filesystem::create_directory(project);
    std::filesystem::permissions(project, std::filesystem::perms::owner_all |
                                              std::filesystem::perms::group_read |
                                              std::filesystem::perms::group_exec |
                                              std::filesystem::perms::others_read |
                                              std::filesystem::perms::others_exec);
    spit(project / "portico.yaml", "routes: []\n");
    const std::string error = open_error(project);
    EXPECT_NE(error.find("'portico.yaml'"), std::string::npos) << error;
    EXPECT_NE(error.find("a directory of its own"), std::string::npos) << error;
    EXPECT_EQ(mode_of(project), 0755u);
    EXPECT_FALSE(std::filesystem::exists(project / "ca-key.pem"));
    // What portico leaves there itself does not count.
    const auto emptied = tmp / "emptied";
    ASSERT_TRUE(open_ok(emptied));
    std::filesystem::remove(emptied / "ca.pem");
    std::filesystem::remove(emptied / "ca-key.pem");
    std::filesystem::create_directory(emptied / "leaves");
    ASSERT_TRUE(open_ok(emptied));
    // Nor do hidden files, which say nothing of whose directory it is.
    const auto kept = tmp / "kept";
    std::filesystem::create_directory(kept);
    spit(kept / ".gitkeep", "");
    ASSERT_TRUE(open_ok(kept));
}

TEST(CertificateAuthorityTest, DamagedCertificateIsAnErrorAndUntouched)
{
    const temp_dir tmp;
    ASSERT_TRUE(open_ok(tmp / "ca"));
    const std::string key = slurp(tmp / "ca/ca-key.pem");
    const std::string damaged = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    spit(tmp / "ca/ca.pem", damaged);
    const std::string error = open_error(tmp / "ca");
    EXPECT_NE(error.find("ca.pem"), std::string::npos) << error;
    EXPECT_NE(error.find("move"), std::string::npos) << error;
    EXPECT_EQ(slurp(tmp / "ca/ca.pem"), damaged);
    EXPECT_EQ(slurp(tmp / "ca/ca-key.pem"), key);
}

TEST(CertificateAuthorityTest, MissingKeyIsAnError)
{
    const temp_dir tmp;
    ASSERT_TRUE(open_ok(tmp / "ca"));
    const std::string cert = slurp(tmp / "ca/ca.pem");
    std::filesystem::remove(tmp / "ca/ca-key.pem");
    const std::string error = open_error(tmp / "ca");
    EXPECT_NE(error.find("ca-key.pem"), std::string::npos) << error;
    EXPECT_NE(error.find("missing"), std::string::npos) << error;
    EXPECT_EQ(slurp(tmp / "ca/ca.pem"), cert);
    EXPECT_FALSE(std::filesystem::exists(tmp / "ca/ca-key.pem"));
}

TEST(CertificateAuthorityTest, MissingCertificateIsAnError)
{
    const temp_dir tmp;
    ASSERT_TRUE(open_ok(tmp / "ca"));
    std::filesystem::remove(tmp / "ca/ca.pem");
    const std::string error = open_error(tmp / "ca");
    EXPECT_NE(error.find("ca.pem: missing"), std::string::npos) << error;
    EXPECT_FALSE(std::filesystem::exists(tmp / "ca/ca.pem"));
}

TEST(CertificateAuthorityTest, KeyOfAnotherCaIsAnError)
{
    const temp_dir tmp;
    ASSERT_TRUE(open_ok(tmp / "one"));
    ASSERT_TRUE(open_ok(tmp / "two"));
    std::filesystem::copy_file(tmp / "two/ca-key.pem", tmp / "one/ca-key.pem",
                               std::filesystem::copy_options::overwrite_existing);
    const std::string error = open_error(tmp / "one");
    EXPECT_NE(error.find("does not belong"), std::string::npos) << error;
}

TEST(CertificateAuthorityTest, GarbageKeyIsAnError)
{
    const temp_dir tmp;
    ASSERT_TRUE(open_ok(tmp / "ca"));
    spit(tmp / "ca/ca-key.pem", "not a key");
    const std::string error = open_error(tmp / "ca");
    EXPECT_NE(error.find("ca-key.pem: not a valid PEM private key"), std::string::npos) << error;
}

TEST(CertificateAuthorityTest, EmptyPermittedNamesAreRefused)
{
    const temp_dir tmp;
    std::string error;
    EXPECT_FALSE(certificate_authority::open(tmp / "ca", {}, error));
    EXPECT_NE(error.find("ca_permitted_names"), std::string::npos) << error;
    EXPECT_FALSE(std::filesystem::exists(tmp / "ca/ca.pem"));
    EXPECT_FALSE(certificate_authority::open(tmp / "ca2", {"bad name"}, error));
    EXPECT_NE(error.find("bad name"), std::string::npos) << error;
}

TEST(CertificateAuthorityTest, ConcurrentOpenCreatesOneCa)
{
    const temp_dir tmp;
    std::string pems[2];
    std::thread threads[2];
    for (int i = 0; i < 2; ++i) {
        threads[i] = std::thread([&, i] {
            std::string error;
            const auto ca = certificate_authority::open(tmp / "ca", default_names, error);
            pems[i] = ca ? ca->certificate_pem() : error;
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(pems[0], pems[1]);
    EXPECT_EQ(pems[0], slurp(tmp / "ca/ca.pem"));
}

TEST(CertificateAuthorityTest, SubjectSaysWhoseCaItIs)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    const x509_ptr cert = first_certificate(ca->certificate_pem());
    const std::string cn = subject_field(X509_get_subject_name(cert.get()), NID_commonName);
    EXPECT_EQ(cn.rfind("portico local CA (", 0), 0u) << cn;
    EXPECT_NE(cn.find('@'), std::string::npos) << cn;
    EXPECT_EQ(subject_field(X509_get_subject_name(cert.get()), NID_organizationName),
              "portico development CA");
    EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(cert.get()), X509_get_issuer_name(cert.get())),
              0);
    int days = 0;
    int seconds = 0;
    ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, nullptr, X509_get0_notAfter(cert.get())), 1);
    EXPECT_GT(days, 365 * 10 - 2);
}

TEST(CertificateAuthorityTest, CaExtensionsLimitItToSigning)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    const x509_ptr cert = first_certificate(ca->certificate_pem());
    bool critical = false;
    EXPECT_EQ(extension_text(cert.get(), NID_basic_constraints, critical), "CA:TRUE, pathlen:0");
    EXPECT_TRUE(critical);
    EXPECT_EQ(X509_get_key_usage(cert.get()),
              static_cast<std::uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    EXPECT_NE(extension_text(cert.get(), NID_key_usage, critical), "");
    EXPECT_TRUE(critical);
    EXPECT_NE(X509_get0_subject_key_id(cert.get()), nullptr);
    const pkey_ptr key(X509_get_pubkey(cert.get()));
    EXPECT_TRUE(EVP_PKEY_is_a(key.get(), "EC"));
    char group[64] = {};
    EVP_PKEY_get_group_name(key.get(), group, sizeof group, nullptr);
    EXPECT_STREQ(group, "prime256v1");
}

TEST(CertificateAuthorityTest, NameConstraintsAreCriticalAndComplete)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "ca", {"localhost", "Dev.Internal"});
    ASSERT_TRUE(ca);
    const x509_ptr cert = first_certificate(ca->certificate_pem());
    int critical = 0;
    const name_constraints_ptr nc(static_cast<NAME_CONSTRAINTS*>(
        X509_get_ext_d2i(cert.get(), NID_name_constraints, &critical, nullptr)));
    ASSERT_TRUE(nc);
    EXPECT_EQ(critical, 1);
    EXPECT_EQ(nc->excludedSubtrees, nullptr);
    std::set<std::string> dns;
    std::set<std::string> ip;
    for (int i = 0; i < sk_GENERAL_SUBTREE_num(nc->permittedSubtrees); ++i) {
        const GENERAL_NAME* base = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, i)->base;
        const ASN1_STRING* s = base->type == GEN_DNS ? base->d.dNSName : base->d.iPAddress;
        const std::string bytes(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                static_cast<std::size_t>(ASN1_STRING_length(s)));
        (base->type == GEN_DNS ? dns : ip).insert(bytes);
    }
    EXPECT_EQ(dns, (std::set<std::string>{"localhost", "dev.internal"}));
    const std::string v4 = std::string("\x7f\0\0\0", 4) + std::string("\xff\0\0\0", 4);
    const std::string v6 = parse_ip_literal("::1") + std::string(16, '\xff');
    EXPECT_EQ(ip, (std::set<std::string>{v4, v6}));
}

TEST(CertificateAuthorityTest, PermitsFollowsTheNameConstraints)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    for (const char* name : {"localhost", "app.localhost", "a.b.localhost", "APP.Localhost.",
                             "x.test", "test", "127.0.0.1", "127.255.0.9", "::1"}) {
        EXPECT_TRUE(ca->permits(name)) << name;
    }
    for (const char* name : {"example.com", "notlocalhost", "localhost.com", "xtest", "",
                             "10.0.0.1", "128.0.0.1", "::2", "fe80::1"}) {
        EXPECT_FALSE(ca->permits(name)) << name;
    }
}

TEST(CertificateAuthorityTest, LeafVerifiesWithTheRightNameAndKey)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    const auto leaf = ca->issue("app.localhost");
    const x509_ptr cert = leaf_of(leaf);
    ASSERT_TRUE(cert);
    EXPECT_EQ(verify_leaf(cert.get(), ca->certificate_pem()), X509_V_OK);
    EXPECT_EQ(X509_check_host(cert.get(), "app.localhost", 0, 0, nullptr), 1);
    EXPECT_NE(X509_check_host(cert.get(), "other.localhost", 0, 0, nullptr), 1);
    EXPECT_NE(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
    bool critical = true;
    EXPECT_EQ(extension_text(cert.get(), NID_subject_alt_name, critical), "DNS:app.localhost");
    EXPECT_FALSE(critical);
    EXPECT_EQ(extension_text(cert.get(), NID_basic_constraints, critical), "CA:FALSE");
    EXPECT_EQ(X509_get_key_usage(cert.get()), static_cast<std::uint32_t>(KU_DIGITAL_SIGNATURE));
    EXPECT_EQ(X509_get_extended_key_usage(cert.get()), static_cast<std::uint32_t>(XKU_SSL_SERVER));
    const x509_ptr ca_cert = first_certificate(ca->certificate_pem());
    EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(cert.get()),
                                    X509_get0_subject_key_id(ca_cert.get())),
              0);
    EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);

    const pkey_ptr key = parse_private_key(leaf.key_pem);
    ASSERT_TRUE(key);
    EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
    char group[64] = {};
    EVP_PKEY_get_group_name(key.get(), group, sizeof group, nullptr);
    EXPECT_STREQ(group, "prime256v1");

    // The chain is leaf + CA.
    const auto chain = parse_certificates(leaf.certificate_pem);
    ASSERT_EQ(chain.size(), 2u);
    EXPECT_EQ(X509_cmp(chain[1].get(), ca_cert.get()), 0);
}

TEST(CertificateAuthorityTest, LeafValidityFollowsThePolicy)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    const auto now = std::chrono::system_clock::now();
    const auto leaf = ca->issue("app.localhost");
    const x509_ptr cert = leaf_of(leaf);
    const auto not_before = to_time_point(X509_get0_notBefore(cert.get()));
    const auto not_after = to_time_point(X509_get0_notAfter(cert.get()));
    EXPECT_EQ(not_after, leaf.not_after);
    EXPECT_EQ(not_after - not_before, std::chrono::hours(24 * 90));
    EXPECT_LT(not_before, now - std::chrono::minutes(59));
    EXPECT_GT(not_before, now - std::chrono::minutes(61));

    const auto short_leaf = ca->issue("app.localhost", {std::chrono::hours(3), {}});
    EXPECT_LT(short_leaf.not_after, now + std::chrono::hours(3));
    // Random serials: two leaves for the same name differ.
    EXPECT_NE(testing::serial_of(cert.get()), testing::serial_of(leaf_of(short_leaf).get()));
}

TEST(CertificateAuthorityTest, LocalhostLeafHasIpSans)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    const x509_ptr cert = leaf_of(ca->issue("localhost"));
    EXPECT_EQ(verify_leaf(cert.get(), ca->certificate_pem()), X509_V_OK);
    EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
    EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
}

TEST(CertificateAuthorityTest, IpLiteralLeafVerifies)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    for (const char* ip : {"127.0.0.1", "::1"}) {
        const x509_ptr cert = leaf_of(ca->issue(ip));
        EXPECT_EQ(verify_leaf(cert.get(), ca->certificate_pem()), X509_V_OK) << ip;
        EXPECT_EQ(X509_check_ip_asc(cert.get(), ip, 0), 1) << ip;
    }
}

// The point of the name constraints: even with the CA's key, a certificate for a real site
// does not verify.
TEST(CertificateAuthorityTest, LeafForARealSiteFailsVerification)
{
    const temp_dir tmp;
    const auto ca = open_ok(tmp / "ca");
    ASSERT_TRUE(ca);
    for (const char* name : {"example.com", "www.google.com", "localhost.evil.com", "testx",
                             "10.0.0.1", "192.168.1.1", "2001:db8::1"}) {
        EXPECT_FALSE(ca->permits(name)) << name;
        const x509_ptr cert = leaf_of(ca->issue(name));
        EXPECT_EQ(verify_leaf(cert.get(), ca->certificate_pem()), X509_V_ERR_PERMITTED_VIOLATION)
            << name;
    }
}

} // namespace
} // namespace portico::tls
