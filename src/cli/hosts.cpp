#include "cli/hosts.hpp"

#include "cli/config_source.hpp"
#include "portico/cli/app.hpp"
#include "portico/core/uri.hpp"
#include "portico/tls/certificates.hpp"

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>

namespace portico::cli {
namespace {

// The block is found again by these exact lines, so `--remove` never touches a user's own.
constexpr std::string_view block_begin = "# portico begin (managed by `portico hosts`)";
constexpr std::string_view block_end = "# portico end";
constexpr std::string_view default_hosts_file = "/etc/hosts";

bool is_ip_literal(std::string_view name)
{
    boost::system::error_code ec;
    boost::asio::ip::make_address(std::string(name), ec);
    return !ec;
}

bool needs_entry(std::string_view host)
{
    return !host.empty() && host != "localhost" && !host.ends_with(".localhost") &&
           !is_ip_literal(host) && !host.starts_with("*.");
}

std::filesystem::path hosts_file()
{
    if (const char* override_path = std::getenv("PORTICO_HOSTS_FILE");
        override_path != nullptr && *override_path != '\0') {
        return override_path;
    }
    return std::filesystem::path(default_hosts_file);
}

/// Reads the whole file; nullopt with `error` set when it cannot be read.
std::optional<std::string> read_text(const std::filesystem::path& path, std::string& error)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = fmt::format("cannot read {}: {}", path.string(),
                            std::generic_category().message(errno));
        return std::nullopt;
    }
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

/// Writes all of `text` at the start of the open file `fd` and cuts it there.
bool rewrite_in_place(int fd, std::string_view text)
{
    for (off_t at = 0; !text.empty();) {
        const ssize_t n = ::pwrite(fd, text.data(), text.size(), at);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        text.remove_prefix(static_cast<std::size_t>(n));
        at += n;
    }
    return true;
}

/**
 * Replaces the file's content, keeping its mode. A rename keeps readers from seeing half a
 * file, and a failed write from leaving one. Where the file cannot be replaced but can be
 * written (a container's bind-mounted /etc/hosts gives EBUSY; a hosts file made writable
 * in a directory that is not gives EACCES), it is rewritten in place, and put back as it
 * was should that fail part-way (a full disk). A symbolic link is followed, as an editor
 * would: /etc/hosts is one on some systems, and replacing the link would cut it off from
 * the file it names.
 */
std::string write_text(const std::filesystem::path& link, const std::string& original,
                       const std::string& text)
{
    std::error_code ec;
    auto path = std::filesystem::canonical(link, ec);
    if (ec) {
        path = link;
    }
    struct stat st {};
    const unsigned mode = ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
    int failed_errno = 0;
    auto error = tls::write_file_atomically(path, text, mode, &failed_errno);
    // What a full disk or a quota gives (ENOSPC, EDQUOT, EFBIG) would fail in place too.
    const bool not_replaceable = failed_errno == EBUSY || failed_errno == EACCES ||
                                 failed_errno == EPERM || failed_errno == EXDEV;
    if (error.empty() || !not_replaceable) {
        return error;
    }
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return fmt::format("cannot write {}: {}", path.string(),
                           std::generic_category().message(errno));
    }
    const auto replace_with = [fd](const std::string& content) {
        return rewrite_in_place(fd, content) &&
               ::ftruncate(fd, static_cast<off_t>(content.size())) == 0 && ::fsync(fd) == 0;
    };
    if (replace_with(text)) {
        ::close(fd);
        return {};
    }
    const int err = errno;
    const bool restored = replace_with(original);
    ::close(fd);
    return fmt::format("cannot write {}: {}; {}", path.string(),
                       std::generic_category().message(err),
                       restored ? "it is as it was" : "it may be damaged: check it");
}

std::string permission_hint(const std::filesystem::path& path, std::string_view verb)
{
    return fmt::format("changing {} needs root: run `sudo portico hosts {}`", path.string(), verb);
}

} // namespace

std::vector<std::string> names_needing_hosts_entries(const config::config& cfg)
{
    std::vector<std::string> names;
    const auto add = [&](const std::string& host) {
        const auto normal = uri::normalize_host(host).value_or(host);
        if (needs_entry(normal) && std::find(names.begin(), names.end(), normal) == names.end()) {
            names.push_back(normal);
        }
    };
    for (const auto& r : cfg.routes) {
        add(r.host);
    }
    add(cfg.admin);
    return names;
}

std::vector<std::string> wildcard_hosts(const config::config& cfg)
{
    std::vector<std::string> out;
    for (const auto& r : cfg.routes) {
        if (r.is_wildcard() && !r.host.ends_with(".localhost") &&
            std::find(out.begin(), out.end(), r.host) == out.end()) {
            out.push_back(r.host);
        }
    }
    return out;
}

std::optional<std::string> without_portico_block(std::string_view text, std::string& error)
{
    std::string out;
    std::size_t begun_at = 0; ///< line number of the block's first line while inside it
    std::size_t number = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto end = text.find('\n', pos);
        const bool last = end == std::string_view::npos;
        end = last ? text.size() : end + 1;
        const auto line = text.substr(pos, end - pos);
        pos = end;
        ++number;
        const auto content = line.substr(0, line.find_last_not_of("\r\n") + 1);
        if (begun_at == 0 && content == block_begin) {
            begun_at = number;
            continue;
        }
        if (begun_at != 0) {
            begun_at = content == block_end ? 0 : begun_at;
            continue;
        }
        out += line;
    }
    if (begun_at != 0) {
        // Everything after the first line would go with the block; the lines there may be
        // the user's own.
        error = fmt::format("line {} begins portico's block but no \"{}\" line ends it: edit "
                            "the file by hand, removing the block or ending it",
                            begun_at, block_end);
        return std::nullopt;
    }
    return out;
}

std::optional<std::string> with_portico_block(std::string_view text,
                                              const std::vector<std::string>& names,
                                              std::string& error)
{
    auto out = without_portico_block(text, error);
    if (!out || names.empty()) {
        return out;
    }
    if (!out->empty() && out->back() != '\n') {
        *out += '\n';
    }
    *out += block_begin;
    *out += '\n';
    for (const auto& name : names) {
        *out += fmt::format("127.0.0.1 {}\n", name);
    }
    *out += block_end;
    *out += '\n';
    return out;
}

int hosts_command(hosts_action action, const std::optional<std::filesystem::path>& cli_file)
{
    const auto loaded = load_config(cli_file);
    if (!loaded) {
        return exit_config;
    }
    const auto names = names_needing_hosts_entries(loaded->value);
    for (const auto& w : wildcard_hosts(loaded->value)) {
        fmt::print(stderr,
                   "note: {} is a wildcard, which a hosts file cannot express; list each name "
                   "as its own route, or use a local DNS resolver (dnsmasq: address=/{}/127.0.0.1)\n",
                   w, w.substr(2));
    }
    if (action == hosts_action::print) {
        for (const auto& name : names) {
            fmt::print("127.0.0.1 {}\n", name);
        }
        return exit_ok;
    }

    const auto path = hosts_file();
    std::string error;
    const auto current = read_text(path, error);
    if (!current) {
        fmt::print(stderr, "portico: {}\n", error);
        return exit_config;
    }
    const auto next = action == hosts_action::apply ? with_portico_block(*current, names, error)
                                                    : without_portico_block(*current, error);
    if (!next) {
        fmt::print(stderr, "portico: {}: {}\n", path.string(), error);
        return exit_config;
    }
    const std::string_view verb = action == hosts_action::apply ? "--apply" : "--remove";
    if (*next == *current) {
        fmt::print("{} already {}\n", path.string(),
                   action == hosts_action::apply
                       ? (names.empty() ? "has no portico lines, and none are needed"
                                        : "has portico's lines")
                       : "has no portico lines");
        return exit_ok;
    }
    if (error = write_text(path, *current, *next); !error.empty()) {
        fmt::print(stderr, "portico: {}\n",
                   ::access(path.c_str(), W_OK) != 0 ? permission_hint(path, verb) : error);
        return exit_config;
    }
    if (action == hosts_action::apply) {
        fmt::print("{}: {} name{} now resolve{} to 127.0.0.1 ({})\n", path.string(), names.size(),
                   names.size() == 1 ? "" : "s", names.size() == 1 ? "s" : "",
                   fmt::join(names, ", "));
    } else {
        fmt::print("{}: portico's lines removed\n", path.string());
    }
    return exit_ok;
}

} // namespace portico::cli
