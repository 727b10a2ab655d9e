#include "tls/openssl.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace portico::tls {
namespace {

std::string pem_of(const std::function<int(BIO*)>& write)
{
    const bio_ptr bio(BIO_new(BIO_s_mem()));
    EXPECT_EQ(write(bio.get()), 1);
    char* data = nullptr;
    const long length = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(length));
}

std::string type_of(const pkey_ptr& key)
{
    return key ? EVP_PKEY_get0_type_name(key.get()) : "(none)";
}

TEST(OpenSslKeyTest, KeyOfTheExpectedTypeIsReadInEitherPemForm)
{
    const pkey_ptr key(EVP_EC_gen("P-256"));
    ASSERT_TRUE(key);
    const auto pkcs8 = to_pem(key.get());
    const auto traditional = pem_of([&](BIO* bio) {
        return PEM_write_bio_PrivateKey_traditional(bio, key.get(), nullptr, nullptr, 0, nullptr,
                                                    nullptr);
    });
    ASSERT_NE(traditional.find("BEGIN EC PRIVATE KEY"), std::string::npos);
    for (const auto& pem : {pkcs8, traditional}) {
        const auto back = parse_private_key(pem, "EC");
        ASSERT_TRUE(back);
        EXPECT_EQ(EVP_PKEY_eq(back.get(), key.get()), 1);
    }
}

TEST(OpenSslKeyTest, TypedReadAloneReadsItsTypeAndNothingElse)
{
    // The fast path on its own: were it never to succeed, parse_private_key's fallback
    // would hide it.
    const pkey_ptr key(EVP_EC_gen("P-256"));
    ASSERT_TRUE(key);
    const auto traditional = pem_of([&](BIO* bio) {
        return PEM_write_bio_PrivateKey_traditional(bio, key.get(), nullptr, nullptr, 0, nullptr,
                                                    nullptr);
    });
    for (const auto& pem : {to_pem(key.get()), traditional}) {
        const auto back = parse_private_key_of_type(pem, "EC");
        ASSERT_TRUE(back);
        EXPECT_EQ(EVP_PKEY_eq(back.get(), key.get()), 1);
    }
    EXPECT_FALSE(parse_private_key_of_type(to_pem(key.get()), "RSA"));
    const pkey_ptr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    ASSERT_TRUE(ed);
    EXPECT_FALSE(parse_private_key_of_type(to_pem(ed.get()), "EC"));
    const auto encrypted = pem_of([&](BIO* bio) {
        static char passphrase[] = "secret";
        return PEM_write_bio_PKCS8PrivateKey(bio, key.get(), EVP_aes_256_cbc(), passphrase, 6,
                                             nullptr, nullptr);
    });
    EXPECT_FALSE(parse_private_key_of_type(encrypted, "EC"));
    // A public key is no private key, whatever its type.
    const auto public_key = pem_of([&](BIO* bio) { return PEM_write_bio_PUBKEY(bio, key.get()); });
    EXPECT_FALSE(parse_private_key_of_type(public_key, "EC"));
    EXPECT_FALSE(parse_private_key(public_key, "EC"));
    EXPECT_EQ(ERR_peek_error(), 0UL);
}

TEST(OpenSslKeyTest, KeyOfAnotherTypeThanExpectedIsStillRead)
{
    // A user's certificate may carry an RSA key whatever type was guessed.
    const pkey_ptr rsa(EVP_RSA_gen(2048));
    ASSERT_TRUE(rsa);
    const auto back = parse_private_key(to_pem(rsa.get()), "EC");
    EXPECT_EQ(type_of(back), "RSA");
    EXPECT_EQ(EVP_PKEY_eq(back.get(), rsa.get()), 1);
    const pkey_ptr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    ASSERT_TRUE(ed);
    EXPECT_EQ(type_of(parse_private_key(to_pem(ed.get()), "RSA")), "ED25519");
}

TEST(OpenSslKeyTest, EncryptedOrDamagedKeyIsNotReadWhateverTheType)
{
    const pkey_ptr key(EVP_EC_gen("P-256"));
    ASSERT_TRUE(key);
    // An encrypted key must fail at once: a passphrase prompt would hang a server.
    const auto encrypted = pem_of([&](BIO* bio) {
        static char passphrase[] = "secret";
        return PEM_write_bio_PKCS8PrivateKey(bio, key.get(), EVP_aes_256_cbc(), passphrase, 6,
                                             nullptr, nullptr);
    });
    ASSERT_NE(encrypted.find("ENCRYPTED"), std::string::npos);
    EXPECT_FALSE(parse_private_key(encrypted, "EC"));
    EXPECT_FALSE(parse_private_key(encrypted));

    auto damaged = to_pem(key.get());
    damaged[damaged.size() / 2] = damaged[damaged.size() / 2] == 'A' ? 'B' : 'A';
    damaged.erase(damaged.size() / 2 + 1, 8);
    EXPECT_FALSE(parse_private_key(damaged, "EC"));
    EXPECT_FALSE(parse_private_key("not a key", "EC"));
    EXPECT_FALSE(parse_private_key("", nullptr));
}

TEST(OpenSslKeyTest, CertificateKeyTypeNamesTheCertificatesKey)
{
    const pkey_ptr key(EVP_EC_gen("P-256"));
    ASSERT_TRUE(key);
    const x509_ptr cert(X509_new());
    ASSERT_TRUE(cert);
    ASSERT_EQ(X509_set_pubkey(cert.get(), key.get()), 1);
    EXPECT_STREQ(certificate_key_type(cert.get()), "EC");
    const x509_ptr empty(X509_new());
    EXPECT_EQ(certificate_key_type(empty.get()), nullptr);
    EXPECT_EQ(ERR_peek_error(), 0UL); // nothing left on the caller's error queue
}

} // namespace
} // namespace portico::tls
