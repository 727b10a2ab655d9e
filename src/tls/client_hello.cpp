#include "portico/tls/client_hello.hpp"

#include "portico/core/uri.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>

namespace portico::tls {
namespace {

// Hand-written rather than OpenSSL's SSL_client_hello_* API: that API needs a live SSL
// object that would answer the client, while passthrough must read the name and forward the
// bytes untouched. The format is small and fixed (RFC 8446 §5.1, §4.1.2; RFC 6066 §3).

constexpr unsigned char content_type_handshake = 22;
constexpr unsigned char handshake_client_hello = 1;
constexpr unsigned char record_version_major = 3;
constexpr std::size_t record_header_bytes = 5;
constexpr std::size_t handshake_header_bytes = 4;
/// TLSPlaintext.length must not exceed 2^14 (RFC 8446 §5.1).
constexpr std::size_t max_record_fragment = 1 << 14;
/// Bound on the ClientHello body; real ones are under 2 KiB (a few more with post-quantum
/// key shares).
constexpr std::size_t max_hello_bytes = 64 * 1024;
constexpr std::size_t random_bytes = 32;
constexpr std::size_t max_session_id = 32;
constexpr std::uint16_t extension_server_name = 0;
constexpr unsigned char name_type_host_name = 0;
constexpr std::size_t max_host_name = 255;

/// Reads big-endian fields from a byte string; every read fails once the data runs out.
class reader {
public:
    explicit reader(std::string_view data) : data_(data) {}

    bool empty() const noexcept { return data_.empty(); }
    std::size_t size() const noexcept { return data_.size(); }

    std::optional<std::size_t> number(std::size_t width)
    {
        if (data_.size() < width) {
            return std::nullopt;
        }
        std::size_t value = 0;
        for (std::size_t i = 0; i < width; ++i) {
            value = (value << 8) | static_cast<unsigned char>(data_[i]);
        }
        data_.remove_prefix(width);
        return value;
    }

    std::optional<std::string_view> bytes(std::size_t n)
    {
        if (data_.size() < n) {
            return std::nullopt;
        }
        const auto out = data_.substr(0, n);
        data_.remove_prefix(n);
        return out;
    }

    /// A vector with a `width`-byte length prefix (RFC 8446 §3.4).
    std::optional<std::string_view> vector(std::size_t width)
    {
        const auto n = number(width);
        if (!n) {
            return std::nullopt;
        }
        return bytes(*n);
    }

private:
    std::string_view data_;
};

hello_result malformed()
{
    return {hello_status::malformed, {}};
}

bool is_host_name_char(unsigned char c) noexcept
{
    return c > 0x20 && c < 0x7f;
}

/// Parses the server_name extension body (RFC 6066 §3) into `name`.
bool parse_server_name(std::string_view data, std::string& name)
{
    reader ext(data);
    const auto list = ext.vector(2);
    if (!list || list->empty() || !ext.empty()) {
        return false;
    }
    reader names(*list);
    bool seen_host_name = false;
    while (!names.empty()) {
        const auto type = names.number(1);
        const auto value = names.vector(2);
        if (!type || !value) {
            return false;
        }
        if (*type != name_type_host_name) {
            continue; // no other type is defined; skip it as RFC 6066 §3 anticipates
        }
        // "MUST NOT contain more than one name of the same name_type".
        if (seen_host_name || value->empty() || value->size() > max_host_name) {
            return false;
        }
        seen_host_name = true;
        // A name with a space, a control or a non-ASCII byte is no host name, but the hello
        // is well formed: it routes nowhere, and the handshake refuses the name with an
        // unrecognized_name alert rather than a bare close.
        if (std::all_of(value->begin(), value->end(), [](char c) {
                return is_host_name_char(static_cast<unsigned char>(c));
            })) {
            name = uri::to_lower(*value);
        }
    }
    return true;
}

/// Parses a complete ClientHello body (after the 4-byte handshake header).
hello_result parse_body(std::string_view body)
{
    reader r(body);
    const auto legacy_version = r.bytes(2);
    const auto random = r.bytes(random_bytes);
    const auto session_id = r.vector(1);
    const auto cipher_suites = r.vector(2);
    const auto compression = r.vector(1);
    if (!legacy_version || !random || !session_id || session_id->size() > max_session_id ||
        !cipher_suites || cipher_suites->empty() || cipher_suites->size() % 2 != 0 ||
        !compression || compression->empty()) {
        return malformed();
    }
    hello_result result{hello_status::complete, {}};
    if (r.empty()) {
        return result; // a TLS 1.2 hello may omit extensions entirely (RFC 5246 §7.4.1.2)
    }
    const auto extensions = r.vector(2);
    if (!extensions || !r.empty()) {
        return malformed();
    }
    reader ext(*extensions);
    bool seen_server_name = false;
    while (!ext.empty()) {
        const auto type = ext.number(2);
        const auto data = ext.vector(2);
        if (!type || !data) {
            return malformed();
        }
        if (*type != extension_server_name) {
            continue;
        }
        // "There MUST NOT be more than one extension of the same type" (RFC 8446 §4.2).
        if (seen_server_name || !parse_server_name(*data, result.server_name)) {
            return malformed();
        }
        seen_server_name = true;
    }
    return result;
}

} // namespace

hello_result hello_parser::parse(std::string_view bytes)
{
    // The handshake message may be fragmented over several records (RFC 8446 §5.1), and each
    // record over several TCP segments. Whole records are taken into `message_` once; each
    // call looks only at what follows them, so a hello sent in many small pieces costs time
    // in proportion to its size.
    auto rest = bytes.substr(std::min(consumed_, bytes.size()));
    while (!message_size_ || message_.size() < *message_size_) {
        // Checked byte by byte, so that plain HTTP or garbage is rejected at its first byte
        // instead of waiting for a whole record header.
        if (!rest.empty() && static_cast<unsigned char>(rest[0]) != content_type_handshake) {
            return malformed();
        }
        if (rest.size() > 1 && static_cast<unsigned char>(rest[1]) != record_version_major) {
            return malformed();
        }
        if (rest.size() < record_header_bytes) {
            return {};
        }
        const std::size_t length = *reader(rest.substr(3, 2)).number(2);
        // Zero-length handshake fragments are forbidden (RFC 8446 §5.1).
        if (length == 0 || length > max_record_fragment) {
            return malformed();
        }
        const auto fragment = rest.substr(record_header_bytes, length);
        if (!message_size_ && message_.size() + fragment.size() >= handshake_header_bytes) {
            std::string head = message_.substr(0, handshake_header_bytes);
            head.append(fragment.substr(0, handshake_header_bytes - head.size()));
            reader header(head);
            if (*header.number(1) != handshake_client_hello) {
                return malformed();
            }
            const std::size_t body = *header.number(3);
            if (body > max_hello_bytes) {
                return malformed();
            }
            message_size_ = handshake_header_bytes + body;
        }
        if (fragment.size() < length) {
            // The record is still arriving; it may already hold the whole hello.
            if (message_size_ && message_.size() + fragment.size() >= *message_size_) {
                std::string whole = message_;
                whole.append(fragment);
                return parse_body(std::string_view(whole).substr(
                    handshake_header_bytes, *message_size_ - handshake_header_bytes));
            }
            return {};
        }
        message_.append(fragment);
        consumed_ += record_header_bytes + length;
        rest.remove_prefix(record_header_bytes + length);
    }
    return parse_body(std::string_view(message_).substr(handshake_header_bytes,
                                                        *message_size_ - handshake_header_bytes));
}

hello_result parse_client_hello(std::string_view bytes) { return hello_parser().parse(bytes); }

} // namespace portico::tls
