#include "portico/tls/certificates.hpp"

#include "portico/core/log.hpp"
#include "portico/core/uri.hpp"
#include "tls/files.hpp"
#include "tls/openssl.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <ctime>
#include <cstring>
#include <cstdlib>
#include <system_error>
#include <utility>

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace portico::tls {
namespace {

constexpr std::string_view ca_cert_file = "ca.pem";
constexpr std::string_view ca_key_file = "ca-key.pem";
constexpr std::string_view ca_crl_file = "ca.crl";

/// "FILE: WHAT; portico never replaces an existing CA: ...", for a CA's damaged file.
std::string damaged_file(const std::filesystem::path& dir, const std::filesystem::path& file,
                         std::string_view what)
{
    return fmt::format("{}: {}; portico never replaces an existing CA: move {} away to "
                       "create a new one (and trust the new one again)",
                       file.string(), what, dir.string());
}

/**
 * Reads the CA in `dir`, which holds `ca.pem`, `ca-key.pem` or both, into `cert` and `key`
 * without changing anything there; what is wrong with it, or "".
 */
std::string read_existing_ca(const std::filesystem::path& dir, x509_ptr& cert, pkey_ptr& key)
{
    const auto cert_path = dir / ca_cert_file;
    const auto key_path = dir / ca_key_file;
    std::error_code ec;
    const bool has_cert = std::filesystem::exists(cert_path, ec);
    const bool has_key = std::filesystem::exists(key_path, ec);
    if (!has_cert) {
        return damaged_file(dir, cert_path, fmt::format("missing, but {} exists", ca_key_file));
    }
    if (!has_key) {
        return damaged_file(dir, key_path, fmt::format("missing, but {} exists", ca_cert_file));
    }
    std::string error;
    const auto cert_pem = read_file(cert_path, error);
    if (!cert_pem) {
        return error; // read_file's message names the file and the reason
    }
    auto certs = parse_certificates(*cert_pem);
    if (certs.empty()) {
        return damaged_file(dir, cert_path, "not a valid PEM certificate");
    }
    const auto key_pem = read_file(key_path, error);
    if (!key_pem) {
        return error;
    }
    key = parse_private_key(*key_pem, certificate_key_type(certs.front().get()));
    if (!key) {
        return damaged_file(dir, key_path, "not a valid PEM private key");
    }
    cert = std::move(certs.front());
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
        ERR_clear_error();
        return damaged_file(dir, key_path, fmt::format("does not belong to {}", ca_cert_file));
    }
    if (X509_check_ca(cert.get()) != 1) {
        return damaged_file(dir, cert_path, "not a CA certificate");
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
        return damaged_file(dir, cert_path, "expired");
    }
    return {};
}

/**
 * The name of a file in `dir` that a CA directory would not hold, when `dir` holds no CA:
 * a `ca_dir` naming a project or the home directory would have that directory made private
 * and the CA's private key written into it. "" when `dir` is missing, empty or a CA's.
 */
std::string file_of_another_kind(const std::filesystem::path& dir)
{
    std::error_code ec;
    if (std::filesystem::exists(dir / ca_cert_file, ec) ||
        std::filesystem::exists(dir / ca_key_file, ec)) {
        return {};
    }
    std::filesystem::directory_iterator it(dir, ec);
    for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        const auto name = it->path().filename().string();
        // What portico writes here: the CA, its revocation list, the leaves, and the
        // temporary files of an atomic write that another process may be making now; and
        // hidden files (.gitkeep, .DS_Store), which say nothing of whose directory it is.
        const bool own = name == ca_crl_file || name == "leaves" || name.starts_with('.');
        if (!own) {
            return "'" + name + "'";
        }
    }
    return {};
}

/// The CA's revocation list is re-signed when less than half of this remains, so that a
/// client that checks it never finds it expired while portico runs now and then.
constexpr std::chrono::hours crl_validity{24 * 366};

/// How long the CA is valid: long enough that nobody has to re-trust it.
constexpr std::chrono::hours ca_validity{24 * 3653}; // ten years, leap days included
/// Certificates start an hour in the past so that a client whose clock is slightly behind
/// does not see a certificate that is not yet valid.
constexpr std::chrono::hours backdating{1};
/// ub-common-name (RFC 5280 appendix A.1).
constexpr std::size_t max_common_name = 64;

constexpr unsigned private_key_mode = 0600;
constexpr unsigned certificate_mode = 0644;

/// The IP ranges the CA may sign: 127.0.0.0/8 and ::1/128, as address and mask bytes
/// (RFC 5280 §4.2.1.10: an IP subtree is the address followed by the mask).
struct ip_subtree {
    std::string address;
    std::string mask;
};

std::vector<ip_subtree> loopback_subtrees()
{
    const std::string v6_loopback = parse_ip_literal("::1");
    return {
        {std::string("\x7f\x00\x00\x00", 4), std::string("\xff\x00\x00\x00", 4)},
        {v6_loopback, std::string(16, '\xff')},
    };
}

/// "user@host", naming whose CA this is in its subject.
std::string owner_label()
{
    std::string user;
    if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr) {
        user = pw->pw_name;
    } else if (const char* env = std::getenv("USER"); env != nullptr) {
        user = env;
    } else {
        user = std::to_string(::geteuid());
    }
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) {
        std::strcpy(host, "localhost");
    }
    return user + "@" + host;
}

pkey_ptr generate_p256_key()
{
    return pkey_ptr(check(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), "P-256 keygen"));
}

/// A random positive 128-bit serial: unique without any state (RFC 5280 §4.1.2.2 allows up
/// to 20 octets; CA/B Forum asks for at least 64 bits of randomness).
void set_random_serial(X509* cert)
{
    unsigned char bytes[16];
    check(RAND_bytes(bytes, sizeof bytes), "RAND_bytes");
    bytes[0] &= 0x7f; // positive in DER
    bytes[0] |= 0x01; // and never zero
    const bignum_ptr bn(check(BN_bin2bn(bytes, sizeof bytes, nullptr), "BN_bin2bn"));
    const asn1_integer_ptr serial(check(BN_to_ASN1_INTEGER(bn.get(), nullptr), "serial"));
    check(X509_set_serialNumber(cert, serial.get()), "X509_set_serialNumber");
}

/// Sets notBefore to now minus the backdating and notAfter `validity` later; returns notAfter.
std::chrono::system_clock::time_point set_validity(X509* cert, std::chrono::hours validity)
{
    const auto not_before = std::chrono::system_clock::now() - backdating;
    const auto not_after = not_before + validity;
    check(
        ASN1_TIME_set(X509_getm_notBefore(cert), std::chrono::system_clock::to_time_t(not_before)),
        "notBefore");
    check(ASN1_TIME_set(X509_getm_notAfter(cert), std::chrono::system_clock::to_time_t(not_after)),
          "notAfter");
    return std::chrono::time_point_cast<std::chrono::seconds>(not_after);
}

/// A v3 certificate with a random serial and the given public key; names and extensions are
/// the caller's.
x509_ptr new_certificate(EVP_PKEY* public_key)
{
    x509_ptr cert(check(X509_new(), "X509_new"));
    check(X509_set_version(cert.get(), X509_VERSION_3), "X509_set_version");
    set_random_serial(cert.get());
    check(X509_set_pubkey(cert.get(), public_key), "X509_set_pubkey");
    return cert;
}

void add_name_entry(X509_NAME* name, const char* field, std::string_view value)
{
    check(X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>(value.data()),
                                     static_cast<int>(value.size()), -1, 0),
          "X509_NAME_add_entry_by_txt");
}

/// Adds an extension written in OpenSSL's configuration syntax. Only for constant values:
/// names from configuration or clients are encoded by `add_general_names`, never parsed.
void add_extension(X509* cert, X509V3_CTX& ctx, int nid, const char* value)
{
    const x509_extension_ptr ext(
        check(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value), OBJ_nid2sn(nid)));
    check(X509_add_ext(cert, ext.get(), -1), "X509_add_ext");
}

/// A GENERAL_NAME of type GEN_DNS (IA5String) or GEN_IPADD (address bytes, or address and
/// mask in name constraints).
general_name_ptr make_general_name(int type, std::string_view bytes)
{
    general_name_ptr name(check(GENERAL_NAME_new(), "GENERAL_NAME_new"));
    ASN1_STRING* value = type == GEN_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();
    check(value, "ASN1_STRING_new");
    if (ASN1_STRING_set(value, bytes.data(), static_cast<int>(bytes.size())) != 1) {
        ASN1_STRING_free(value);
        throw_openssl_error("ASN1_STRING_set");
    }
    GENERAL_NAME_set0_value(name.get(), type, value);
    return name;
}

/// Appends a permitted subtree to the name constraints.
void add_permitted_subtree(NAME_CONSTRAINTS* constraints, general_name_ptr base)
{
    general_subtree_ptr subtree(check(GENERAL_SUBTREE_new(), "GENERAL_SUBTREE_new"));
    GENERAL_NAME_free(subtree->base);
    subtree->base = base.release();
    if (sk_GENERAL_SUBTREE_push(constraints->permittedSubtrees, subtree.get()) == 0) {
        throw_openssl_error("sk_GENERAL_SUBTREE_push");
    }
    static_cast<void>(subtree.release()); // owned by the stack
}

/**
 * The critical name constraints extension (RFC 5280 §4.2.1.10): DNS subtrees for the
 * permitted suffixes ("localhost" matches localhost and every name below it) and IP subtrees
 * for the loopback ranges. The IP subtrees matter: a name type without any subtree is not
 * constrained at all, so without them the CA could sign for any IP address.
 */
void add_name_constraints(X509* cert, const std::vector<std::string>& dns_suffixes)
{
    const name_constraints_ptr constraints(check(NAME_CONSTRAINTS_new(), "NAME_CONSTRAINTS_new"));
    constraints->permittedSubtrees = check(sk_GENERAL_SUBTREE_new_null(), "sk_new");
    for (const auto& suffix : dns_suffixes) {
        add_permitted_subtree(constraints.get(), make_general_name(GEN_DNS, suffix));
    }
    for (const auto& range : loopback_subtrees()) {
        add_permitted_subtree(constraints.get(),
                              make_general_name(GEN_IPADD, range.address + range.mask));
    }
    check(X509_add1_ext_i2d(cert, NID_name_constraints, constraints.get(), 1, X509V3_ADD_DEFAULT),
          "nameConstraints");
}

/// Adds subjectAltName; critical when the subject is empty (RFC 5280 §4.2.1.6).
void add_subject_alt_names(X509* cert, const std::vector<general_name_ptr>& names, bool critical)
{
    const general_names_ptr list(check(sk_GENERAL_NAME_new_null(), "sk_GENERAL_NAME_new_null"));
    for (const auto& name : names) {
        general_name_ptr copy(check(GENERAL_NAME_dup(name.get()), "GENERAL_NAME_dup"));
        if (sk_GENERAL_NAME_push(list.get(), copy.get()) == 0) {
            throw_openssl_error("sk_GENERAL_NAME_push");
        }
        static_cast<void>(copy.release());
    }
    check(X509_add1_ext_i2d(cert, NID_subject_alt_name, list.get(), critical ? 1 : 0,
                            X509V3_ADD_DEFAULT),
          "subjectAltName");
}

/// A DNS suffix fit for a name constraint: letters, digits, '-', '_' and inner dots.
bool is_valid_suffix(std::string_view name)
{
    if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.' ||
        name.find("..") != std::string_view::npos) {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    });
}

/// A freshly made CA certificate and its key.
struct ca_material {
    x509_ptr cert;
    pkey_ptr key;
};

ca_material create_ca(const std::vector<std::string>& permitted_names)
{
    ca_material ca;
    ca.key = generate_p256_key();
    ca.cert = new_certificate(ca.key.get());
    X509_NAME* subject = X509_get_subject_name(ca.cert.get());
    add_name_entry(subject, "O", "portico development CA");
    add_name_entry(subject, "CN",
                   fmt::format("portico local CA ({})", owner_label()).substr(0, max_common_name));
    check(X509_set_issuer_name(ca.cert.get(), subject), "X509_set_issuer_name");
    set_validity(ca.cert.get(), ca_validity);

    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca.cert.get(), ca.cert.get(), nullptr, nullptr, 0);
    // pathlen:0 - the CA signs leaves only, never another CA (which would escape nothing,
    // since constraints apply down the chain, but there is no use for one).
    add_extension(ca.cert.get(), ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    add_extension(ca.cert.get(), ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_extension(ca.cert.get(), ctx, NID_subject_key_identifier, "hash");
    add_name_constraints(ca.cert.get(), permitted_names);

    if (X509_sign(ca.cert.get(), ca.key.get(), EVP_sha256()) <= 0) {
        throw_openssl_error("X509_sign");
    }
    return ca;
}

/// `path` as a file URI, every byte outside RFC 3986's unreserved set and '/' escaped, so
/// that the URI survives OpenSSL's extension syntax (which splits on ',').
std::string file_uri(const std::filesystem::path& path)
{
    std::string out = "file://";
    for (const unsigned char c : path.string()) {
        if (std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
            out += static_cast<char>(c);
        } else {
            out += fmt::format("%{:02X}", c);
        }
    }
    return out;
}

/// An empty version 2 CRL signed by the CA, valid from an hour ago for `crl_validity`.
std::string make_crl(X509* ca_cert, EVP_PKEY* ca_key)
{
    const x509_crl_ptr crl(check(X509_CRL_new(), "X509_CRL_new"));
    check(X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2), "X509_CRL_set_version");
    check(X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca_cert)),
          "X509_CRL_set_issuer_name");
    const auto now = std::time(nullptr);
    const openssl_ptr<ASN1_TIME, ASN1_TIME_free> last(
        check(ASN1_TIME_adj(nullptr, now, 0, -static_cast<long>(backdating.count() * 3600)),
              "ASN1_TIME_adj"));
    const openssl_ptr<ASN1_TIME, ASN1_TIME_free> next(check(
        ASN1_TIME_adj(nullptr, now, static_cast<int>(crl_validity.count() / 24), 0), "ASN1_TIME_adj"));
    check(X509_CRL_set1_lastUpdate(crl.get(), last.get()), "X509_CRL_set1_lastUpdate");
    check(X509_CRL_set1_nextUpdate(crl.get(), next.get()), "X509_CRL_set1_nextUpdate");
    // RFC 5280 §5.2.3: a conforming CRL carries a monotonically increasing number; the
    // signing time in seconds is one.
    const asn1_integer_ptr number(check(ASN1_INTEGER_new(), "ASN1_INTEGER_new"));
    check(ASN1_INTEGER_set_int64(number.get(), static_cast<std::int64_t>(now)), "ASN1_INTEGER_set");
    check(X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, X509V3_ADD_DEFAULT),
          "X509_CRL_add1_ext_i2d");
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca_cert, nullptr, nullptr, crl.get(), 0);
    const x509_extension_ptr akid(check(
        X509V3_EXT_nconf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always"),
        "authorityKeyIdentifier"));
    check(X509_CRL_add_ext(crl.get(), akid.get(), -1), "X509_CRL_add_ext");
    if (X509_CRL_sign(crl.get(), ca_key, EVP_sha256()) <= 0) {
        throw_openssl_error("X509_CRL_sign");
    }
    const bio_ptr bio(check(BIO_new(BIO_s_mem()), "BIO_new"));
    check(PEM_write_bio_X509_CRL(bio.get(), crl.get()), "PEM_write_bio_X509_CRL");
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(size));
}

/// True when `pem` is a CRL this CA signed that stays valid for more than half its life.
bool is_current_crl(std::string_view pem, X509* ca_cert)
{
    const bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) {
        return false;
    }
    const x509_crl_ptr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    if (!crl || X509_CRL_verify(crl.get(), X509_get0_pubkey(ca_cert)) != 1 ||
        X509_CRL_get0_nextUpdate(crl.get()) == nullptr) {
        ERR_clear_error();
        return false;
    }
    const auto remaining = to_time_point(X509_CRL_get0_nextUpdate(crl.get())) -
                           std::chrono::system_clock::now();
    return remaining > crl_validity / 2;
}

/// The permitted subtrees of a CA certificate's name constraints: DNS suffixes (lower case)
/// and IP ranges.
void read_permitted_subtrees(X509* cert, std::vector<std::string>& dns,
                             std::vector<ip_subtree>& ip)
{
    int critical = 0;
    const name_constraints_ptr nc(static_cast<NAME_CONSTRAINTS*>(
        X509_get_ext_d2i(cert, NID_name_constraints, &critical, nullptr)));
    if (!nc || nc->permittedSubtrees == nullptr) {
        return;
    }
    for (int i = 0; i < sk_GENERAL_SUBTREE_num(nc->permittedSubtrees); ++i) {
        const GENERAL_NAME* base = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, i)->base;
        if (base->type == GEN_DNS) {
            const ASN1_STRING* s = base->d.dNSName;
            dns.push_back(uri::to_lower(
                std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                 static_cast<std::size_t>(ASN1_STRING_length(s)))));
        } else if (base->type == GEN_IPADD) {
            const ASN1_STRING* s = base->d.iPAddress;
            const std::string bytes(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                    static_cast<std::size_t>(ASN1_STRING_length(s)));
            ip.push_back({bytes.substr(0, bytes.size() / 2), bytes.substr(bytes.size() / 2)});
        }
    }
}

} // namespace

std::string damaged_ca(const std::filesystem::path& ca_dir)
{
    std::error_code ec;
    if (!std::filesystem::exists(ca_dir / ca_cert_file, ec) &&
        !std::filesystem::exists(ca_dir / ca_key_file, ec)) {
        return {};
    }
    try {
        x509_ptr cert;
        pkey_ptr key;
        return read_existing_ca(ca_dir, cert, key);
    } catch (const openssl_error& e) {
        return fmt::format("local CA in {}: {}", ca_dir.string(), e.what());
    }
}

std::string foreign_ca_directory(const std::filesystem::path& ca_dir)
{
    const auto other = file_of_another_kind(ca_dir);
    if (other.empty()) {
        return {};
    }
    return fmt::format("{} holds {} and no portico CA: ca_dir must be a directory of its own, "
                       "since it is made private and holds the CA's private key; choose a new "
                       "path (the default is ~/.local/share/portico)",
                       ca_dir.string(), other);
}

std::optional<std::vector<std::string>>
existing_ca_permitted_names(const std::filesystem::path& ca_dir)
{
    std::string error;
    const auto pem = read_file(ca_dir / ca_cert_file, error);
    if (!pem) {
        return std::nullopt;
    }
    const auto certs = parse_certificates(*pem);
    if (certs.empty()) {
        return std::nullopt;
    }
    std::vector<std::string> dns;
    std::vector<ip_subtree> ip;
    read_permitted_subtrees(certs.front().get(), dns, ip);
    if (dns.empty()) {
        return std::nullopt; // no DNS constraint: the CA may sign any name
    }
    return dns;
}

struct certificate_authority::impl {
    std::filesystem::path dir;
    std::filesystem::path cert_path;
    std::filesystem::path key_path;
    std::filesystem::path crl_path;
    std::string crl_uri; ///< what issued leaves name as their CRL distribution point
    x509_ptr cert;
    pkey_ptr key;
    std::string cert_pem;
    // The permitted subtrees read back from the certificate (the file is the truth, not the
    // configuration, which may have changed since the CA was made).
    std::vector<std::string> dns_subtrees;
    std::vector<ip_subtree> ip_subtrees;

    /**
     * Writes `ca.crl` when it is missing, not this CA's, or past half its validity. No
     * certificate is revoked (a leaf lives 90 days and names one local host); the list
     * exists so that every leaf can point at an authoritative revocation source, which TLS
     * scanners ask for.
     */
    std::string refresh_crl()
    {
        std::string ignored;
        if (const auto current = read_file(crl_path, ignored);
            current && is_current_crl(*current, cert.get())) {
            return {};
        }
        return write_file_atomically(crl_path, make_crl(cert.get(), key.get()), certificate_mode);
    }

    /// Reads the name constraints of `cert` into the subtree lists.
    void read_constraints() { read_permitted_subtrees(cert.get(), dns_subtrees, ip_subtrees); }
};

certificate_authority::certificate_authority(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

certificate_authority::~certificate_authority() = default;

std::unique_ptr<certificate_authority>
certificate_authority::open(const std::filesystem::path& dir,
                            const std::vector<std::string>& permitted_names, std::string& error)
{
    error.clear();
    auto p = std::make_unique<impl>();
    std::error_code ec;
    p->dir = std::filesystem::absolute(dir, ec).lexically_normal();
    p->cert_path = p->dir / ca_cert_file;
    p->key_path = p->dir / ca_key_file;
    p->crl_path = p->dir / ca_crl_file;
    p->crl_uri = file_uri(p->crl_path);
    const auto damaged = [&](const std::filesystem::path& file, std::string_view what) {
        error = damaged_file(p->dir, file, what);
        return nullptr;
    };
    try {
        if (error = foreign_ca_directory(p->dir); !error.empty()) {
            return nullptr;
        }
        if (error = make_private_directory(p->dir); !error.empty()) {
            return nullptr;
        }
        // Two portico processes starting at once serialise here: the loser finds the
        // winner's CA and loads it.
        const directory_lock lock(p->dir);
        if (!lock.error().empty()) {
            error = lock.error();
            return nullptr;
        }
        const bool has_cert = std::filesystem::exists(p->cert_path, ec);
        if (ec) {
            return damaged(p->cert_path, ec.message());
        }
        const bool has_key = std::filesystem::exists(p->key_path, ec);
        if (ec) {
            return damaged(p->key_path, ec.message());
        }
        if (!has_cert && !has_key) {
            // Without a DNS subtree DNS names would be unconstrained, the opposite of an
            // empty list's intent (config validation refuses it too).
            if (permitted_names.empty()) {
                error = "ca_permitted_names must name at least one DNS suffix";
                return nullptr;
            }
            std::vector<std::string> suffixes;
            for (const auto& name : permitted_names) {
                suffixes.push_back(normalize_server_name(name));
                if (!is_valid_suffix(suffixes.back()) || !parse_ip_literal(name).empty()) {
                    error = fmt::format("ca_permitted_names: '{}' is not a DNS name", name);
                    return nullptr;
                }
            }
            const ca_material created = create_ca(suffixes);
            // The key first: a crash between the two renames leaves a key without a
            // certificate, which nobody can have trusted yet.
            if (error =
                    write_file_atomically(p->key_path, to_pem(created.key.get()), private_key_mode);
                !error.empty()) {
                return nullptr;
            }
            if (error = write_file_atomically(p->cert_path, to_pem(created.cert.get()),
                                              certificate_mode);
                !error.empty()) {
                return nullptr;
            }
            PORTICO_LOG(log::level::info, "ca_created", {"path", p->cert_path.string()});
        }
        if (error = read_existing_ca(p->dir, p->cert, p->key); !error.empty()) {
            return nullptr;
        }
        if (error = restrict_key_file(p->key_path); !error.empty()) {
            return nullptr;
        }
        p->cert_pem = to_pem(p->cert.get());
        p->read_constraints();
        if (error = p->refresh_crl(); !error.empty()) {
            return nullptr;
        }
    } catch (const openssl_error& e) {
        error = fmt::format("local CA in {}: {}", p->dir.string(), e.what());
        return nullptr;
    }
    return std::unique_ptr<certificate_authority>(new certificate_authority(std::move(p)));
}

const std::filesystem::path& certificate_authority::certificate_path() const noexcept
{
    return impl_->cert_path;
}

const std::string& certificate_authority::certificate_pem() const noexcept
{
    return impl_->cert_pem;
}

X509* certificate_authority::certificate() const noexcept
{
    return impl_->cert.get();
}

const std::filesystem::path& certificate_authority::crl_path() const noexcept
{
    return impl_->crl_path;
}

const std::string& certificate_authority::crl_uri() const noexcept { return impl_->crl_uri; }

bool certificate_authority::permits(std::string_view name) const
{
    const std::string host = normalize_server_name(name);
    if (host.empty()) {
        return false;
    }
    // Mirrors OpenSSL's name-constraint check (crypto/x509/v3_ncons.c): a name type with no
    // permitted subtree is unconstrained; a DNS subtree matches itself and any name below it.
    if (const std::string ip = parse_ip_literal(host); !ip.empty()) {
        if (impl_->ip_subtrees.empty()) {
            return true;
        }
        return std::any_of(
            impl_->ip_subtrees.begin(), impl_->ip_subtrees.end(), [&ip](const ip_subtree& range) {
                if (range.address.size() != ip.size() || range.mask.size() != ip.size()) {
                    return false;
                }
                for (std::size_t i = 0; i < ip.size(); ++i) {
                    if (((ip[i] ^ range.address[i]) & range.mask[i]) != 0) {
                        return false;
                    }
                }
                return true;
            });
    }
    if (impl_->dns_subtrees.empty()) {
        return true;
    }
    return std::any_of(impl_->dns_subtrees.begin(), impl_->dns_subtrees.end(),
                       [&host](const std::string& base) {
                           if (base.empty() || host == base) {
                               return true;
                           }
                           if (host.size() <= base.size() || !host.ends_with(base)) {
                               return false;
                           }
                           return base.front() == '.' || host[host.size() - base.size() - 1] == '.';
                       });
}

certificate_authority::leaf certificate_authority::issue(std::string_view name,
                                                         const issuance_policy& policy) const
{
    const std::string host = normalize_server_name(name);
    const std::string ip = parse_ip_literal(host);
    const pkey_ptr key = generate_p256_key();
    const x509_ptr cert = new_certificate(key.get());

    // An IP literal gets no common name: OpenSSL checks a dotted CN against the DNS name
    // constraints when a certificate has no DNS SAN, and "127.0.0.1" would fail them.
    // A CA whose permitted names leave out localhost cannot vouch for the name, and a leaf
    // naming it would verify nowhere; the one served for 127.0.0.1, [::1] and no SNI then
    // names the addresses alone.
    const bool named = ip.empty() && (host != "localhost" || permits(host));
    const bool has_subject = named && host.size() <= max_common_name;
    if (has_subject) {
        add_name_entry(X509_get_subject_name(cert.get()), "CN", host);
    }
    check(X509_set_issuer_name(cert.get(), X509_get_subject_name(impl_->cert.get())),
          "X509_set_issuer_name");
    const auto not_after = set_validity(cert.get(), policy.validity);

    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, impl_->cert.get(), cert.get(), nullptr, nullptr, 0);
    add_extension(cert.get(), ctx, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), ctx, NID_key_usage, "critical,digitalSignature");
    add_extension(cert.get(), ctx, NID_ext_key_usage, "serverAuth");
    add_extension(cert.get(), ctx, NID_subject_key_identifier, "hash");
    add_extension(cert.get(), ctx, NID_authority_key_identifier, "keyid:always");
    add_extension(cert.get(), ctx, NID_crl_distribution_points, ("URI:" + impl_->crl_uri).c_str());

    std::vector<general_name_ptr> names;
    if (ip.empty()) {
        if (named) {
            names.push_back(make_general_name(GEN_DNS, host));
        }
        if (host == "localhost") {
            // Browsers reach portico as http(s)://127.0.0.1 and [::1] too.
            names.push_back(make_general_name(GEN_IPADD, parse_ip_literal("127.0.0.1")));
            names.push_back(make_general_name(GEN_IPADD, parse_ip_literal("::1")));
        }
    } else {
        names.push_back(make_general_name(GEN_IPADD, ip));
    }
    add_subject_alt_names(cert.get(), names, !has_subject);

    if (X509_sign(cert.get(), impl_->key.get(), EVP_sha256()) <= 0) {
        throw_openssl_error("X509_sign");
    }
    return leaf{to_pem(cert.get()) + impl_->cert_pem, to_pem(key.get()), not_after};
}

} // namespace portico::tls
