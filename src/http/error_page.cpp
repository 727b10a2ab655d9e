#include "portico/http/error_page.hpp"

#include "portico/core/utf8.hpp"

#include <boost/beast/http/status.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <iterator>
#include <string>
#include <string_view>

namespace portico::http {
namespace {

/// Inline stylesheet: error pages load nothing from the network (SPEC "Behaviour").
constexpr std::string_view page_style = R"css(
:root{color-scheme:light dark;--bg:#f5f6f8;--card:#fff;--fg:#1f2328;--muted:#5f6873;
--line:#d9dde3;--accent:#0b63ce;--code:#eef1f4;--hint:#fff8e6;--hint-line:#f0d58c}
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--card:#171b21;--fg:#e4e8ee;
--muted:#98a2ae;--line:#2c333c;--accent:#5aa2ff;--code:#222831;--hint:#2a2414;
--hint-line:#6b5a26}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
padding:24px;background:var(--bg);color:var(--fg);
font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{width:100%;max-width:640px;background:var(--card);border:1px solid var(--line);
border-radius:12px;padding:28px 32px;box-shadow:0 1px 3px rgba(0,0,0,.06)}
.status{margin:0;color:var(--muted);font-size:13px;letter-spacing:.02em}
h1{margin:4px 0 14px;font-size:22px;font-weight:600}
h2{margin:22px 0 8px;font-size:14px;font-weight:600;color:var(--muted)}
p{margin:0 0 12px}
a{color:var(--accent);text-decoration:none}
a:hover{text-decoration:underline}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:var(--code);border-radius:8px;padding:12px 14px;overflow-x:auto}
ul{margin:0;padding-left:20px}
li{margin:2px 0}
.hint{background:var(--hint);border:1px solid var(--hint-line);border-radius:8px;
padding:10px 14px;margin:16px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:20px 0 0;
padding-top:16px;border-top:1px solid var(--line);font-size:13px}
dt{color:var(--muted)}
dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
overflow-wrap:anywhere}
footer{margin-top:20px;color:var(--muted);font-size:12px}
)css";

/// "a", "a and b", "a, b and c".
std::string join_and(std::span<const std::string> items)
{
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i > 0) {
            out += i + 1 == items.size() ? " and " : ", ";
        }
        out += items[i];
    }
    return out;
}

/// What the message is about: the route when known, else the host asked for.
std::string_view subject(const error_details& d) noexcept
{
    return d.route.empty() ? d.host : d.route;
}

/// " for app.localhost", or nothing when neither route nor host is known.
std::string for_subject(const error_details& d)
{
    const auto s = subject(d);
    return s.empty() ? std::string{} : fmt::format(" for {}", s);
}

/**
 * The backend address to name: the one address tried, else the route's `to` as written
 * (which reads better than a list for `localhost:PORT`), else every address tried.
 */
std::string backend_address(const error_details& d)
{
    if (d.tried.size() == 1) {
        return d.tried.front();
    }
    if (!d.backend.empty()) {
        return std::string{d.backend};
    }
    return join_and(d.tried);
}

/// Appends `detail` as a sentence of its own: capitalised and ending in punctuation.
void append_detail(std::string& message, std::string_view detail)
{
    if (detail.empty()) {
        return;
    }
    message += ' ';
    const auto start = message.size();
    message += detail;
    if (message[start] >= 'a' && message[start] <= 'z') {
        message[start] = static_cast<char>(message[start] - 'a' + 'A');
    }
    const char last = message.back();
    if (last != '.' && last != '!' && last != '?') {
        message += '.';
    }
}

std::string refused_message(const error_details& d)
{
    const auto address = backend_address(d);
    if (d.out_of_descriptors) {
        return fmt::format("portico could not open a connection to {}{}: it has no file "
                           "descriptor left. Raise its limit (ulimit -n) or close connections "
                           "you no longer need; the backend was not tried.",
                           address.empty() ? std::string_view("the backend") : std::string_view(address),
                           for_subject(d));
    }
    if (d.name_unresolved) {
        return fmt::format("The name in {}{} did not resolve to an address: check the host "
                           "name in the route's `to`, or give it a line in /etc/hosts.",
                           address, for_subject(d));
    }
    if (address.empty()) {
        return fmt::format("The backend{} refused the connection: start your dev server.",
                           for_subject(d));
    }
    const auto tried =
        d.tried.size() > 1 ? fmt::format(" (tried {})", join_and(d.tried)) : std::string{};
    return fmt::format("Nothing is listening on {}{}{}: start your dev server on {}.", address,
                       for_subject(d), tried, address);
}

/// "the backend 127.0.0.1:5173" or "the backend".
std::string the_backend(const error_details& d)
{
    const auto address = backend_address(d);
    return address.empty() ? std::string{"the backend"} : fmt::format("the backend {}", address);
}

std::string tls_required_message(const error_details& d)
{
    if (!d.passthrough) {
        return d.https_url.empty()
                   ? std::string{"This address only serves HTTPS."}
                   : fmt::format("This address only serves HTTPS: use {} instead.", d.https_url);
    }
    const auto host = d.host.empty() ? std::string_view("This host") : d.host;
    if (d.scheme == "https") {
        // SNI chose this connection's route before any request: another name, or none.
        return fmt::format("{} is passed through to its backend as TLS (tls_passthrough), "
                           "chosen by the name in the TLS handshake, and this connection's "
                           "handshake named another host or none: open {} in a connection "
                           "of its own.",
                           host, d.https_url.empty() ? std::string_view("it") : d.https_url);
    }
    if (d.https_url.empty()) {
        return fmt::format("{} is passed through to its backend as TLS (tls_passthrough), but "
                           "no listener serves TLS: set tls: auto or tls: only on one.",
                           host);
    }
    return fmt::format("{} is passed through to its backend as TLS (tls_passthrough) and is "
                       "not served over plain HTTP: use {}.",
                       host, d.https_url);
}

std::string base_message(const error_details& d)
{
    switch (d.error) {
    case errc::no_route:
        return d.host.empty() ? std::string{"No route for this host."}
                              : fmt::format("No route for '{}'.", d.host);
    case errc::upstream_refused: return refused_message(d);
    case errc::upstream_connect_timeout:
        return fmt::format("Connecting to {}{} did not complete within timeouts.connect: check "
                           "that the dev server is running and accepting connections.",
                           the_backend(d), for_subject(d));
    case errc::upstream_timeout:
        if (d.body_not_taken) {
            return fmt::format("The request body went unread: {}{} took none of it within "
                               "timeouts.idle and did not answer. Check that the dev server "
                               "reads uploads, or raise timeouts.idle.",
                               the_backend(d), for_subject(d));
        }
        return fmt::format("No response from {}{} within timeouts.upstream: check the dev "
                           "server, or raise timeouts.upstream (0 means no limit).",
                           the_backend(d), for_subject(d));
    case errc::upstream_tls:
        if (!d.certificate_rejected) {
            return fmt::format("The TLS handshake with {}{} failed: check that it serves https "
                               "on that port (a dev server that speaks plain HTTP needs "
                               "http:// in the route's `to`).",
                               the_backend(d), for_subject(d));
        }
        return fmt::format("TLS to {}{} failed: if the backend uses a self-signed or private "
                           "certificate, set insecure_skip_verify: true on the route to skip "
                           "verification.",
                           the_backend(d), for_subject(d));
    case errc::upstream_protocol:
        return fmt::format("Invalid HTTP response from {}{}.", the_backend(d), for_subject(d));
    case errc::bad_request: return "The request is not valid HTTP/1.1 and was not forwarded.";
    case errc::header_too_large:
        return "The request head is larger than limits.header_bytes: send fewer or smaller "
               "headers (large cookies are the usual cause), or raise limits.header_bytes.";
    case errc::body_too_large:
        return "The request body is larger than limits.body_bytes: send a smaller body, or "
               "raise limits.body_bytes (0 means unlimited).";
    case errc::header_timeout:
        return "The request head did not arrive within timeouts.header: the client sent it too "
               "slowly or stopped sending.";
    case errc::tls_required: return tls_required_message(d);
    case errc::forbidden_origin:
        return "The portico admin refuses requests sent from another origin (a guard against "
               "DNS rebinding and cross-site requests): open it directly in the browser.";
    case errc::tls_handshake_failed: return "The TLS handshake with the client failed.";
    }
    return "portico could not handle this request.";
}

std::string render_json(const error_details& d, status code, std::string_view message)
{
    boost::json::object body;
    body["status"] = static_cast<unsigned>(code);
    body["error"] = to_string(d.error);
    body["message"] = message;
    const auto add = [&body](std::string_view key, std::string_view value) {
        if (!value.empty()) {
            body[key] = value;
        }
    };
    add("host", d.host);
    add("route", d.route);
    add("backend", d.backend);
    auto text = boost::json::serialize(body);
    utf8::make_valid(text); // the Host and message may quote a client's bytes
    return text;
}

using html_out = std::back_insert_iterator<std::string>;

} // namespace

std::string how_to_add_a_route(std::string_view config_file)
{
    if (config_file.empty()) {
        // With no file there is nothing to watch: a file written now is read at the next start.
        return "portico is running on its built-in default: write the routes to "
               "<code>portico.yaml</code> in the directory it starts from (or name a file with "
               "<code>-c</code>), then start it again:";
    }
    return fmt::format("Add one to <code>{}</code> and save: portico picks it up within a "
                       "second:",
                       html_escape(config_file));
}

namespace {

/// The configured hosts for a 404: exact hosts as links on the request's scheme and port,
/// wildcard hosts as text (there is no single name to link to).
void render_host_list(html_out out, const error_details& d)
{
    if (d.exact_hosts.empty() && d.wildcard_hosts.empty()) {
        fmt::format_to(out, "<div class=\"hint\">No routes are configured yet. {}</div>\n"
                            "<pre>routes:\n  - host: app.localhost\n"
                            "    to: 127.0.0.1:5173</pre>\n",
                       how_to_add_a_route(d.config_file));
        return;
    }
    fmt::format_to(out, "<h2>Configured hosts</h2>\n<ul>\n");
    const auto port = d.port.empty() ? std::string{} : fmt::format(":{}", d.port);
    for (const auto& host : d.exact_hosts) {
        const auto href = fmt::format("{}://{}{}/", d.scheme, host, port);
        fmt::format_to(out, "<li><a href=\"{}\">{}</a></li>\n", html_escape(href),
                       html_escape(host));
    }
    for (const auto& host : d.wildcard_hosts) {
        fmt::format_to(out, "<li><code>{}</code></li>\n", html_escape(host));
    }
    fmt::format_to(out, "</ul>\n");
}

void render_facts(html_out out, const error_details& d)
{
    if (d.host.empty() && d.route.empty() && d.backend.empty()) {
        return;
    }
    fmt::format_to(out, "<dl>\n");
    const auto row = [out](std::string_view term, std::string_view value) {
        if (!value.empty()) {
            fmt::format_to(out, "<dt>{}</dt><dd>{}</dd>\n", term, html_escape(value));
        }
    };
    row("Host", d.host);
    row("Route", d.route);
    row("Backend", d.backend);
    fmt::format_to(out, "</dl>\n");
}

std::string render_html(const error_details& d, status code, std::string_view message)
{
    const auto reason = beast::http::obsolete_reason(code);
    std::string page;
    page.reserve(4096);
    auto out = std::back_inserter(page);
    // CSP as defence in depth: even if escaping failed, no script or remote asset would load.
    fmt::format_to(out,
                   "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<meta name=\"color-scheme\" content=\"light dark\">\n"
                   "<meta http-equiv=\"Content-Security-Policy\" "
                   "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
                   "<title>{} {} — portico</title>\n<style>",
                   static_cast<unsigned>(code), html_escape(reason));
    page += page_style;
    fmt::format_to(out,
                   "</style>\n</head>\n<body>\n<main>\n"
                   "<p class=\"status\">{} · <code>{}</code></p>\n<h1>{}</h1>\n<p>{}</p>\n",
                   static_cast<unsigned>(code), html_escape(to_string(d.error)),
                   html_escape(reason), html_escape(message));
    if (d.error == errc::no_route && d.message.empty()) { // not the admin's own 404
        render_host_list(out, d);
    } else if (d.error == errc::upstream_refused) {
        const auto address = backend_address(d);
        if (!address.empty()) {
            fmt::format_to(out,
                           "<div class=\"hint\">Start your dev server on {}, then reload this "
                           "page.</div>\n",
                           html_escape(address));
        }
    }
    render_facts(out, d);
    fmt::format_to(out, "<footer>portico</footer>\n</main>\n</body>\n</html>\n");
    return page;
}

} // namespace

std::string html_escape(std::string_view text)
{
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c; break;
        }
    }
    return out;
}


status status_for(errc e) noexcept
{
    switch (e) {
    case errc::no_route: return status::not_found;
    case errc::upstream_refused: return status::bad_gateway;
    case errc::upstream_connect_timeout: return status::gateway_timeout;
    case errc::upstream_timeout: return status::gateway_timeout;
    case errc::upstream_tls: return status::bad_gateway;
    case errc::upstream_protocol: return status::bad_gateway;
    case errc::bad_request: return status::bad_request;
    case errc::header_too_large: return status::request_header_fields_too_large;
    case errc::body_too_large: return status::payload_too_large;
    case errc::header_timeout: return status::request_timeout;
    case errc::tls_required: return status::bad_request;
    case errc::forbidden_origin: return status::forbidden;
    // Never sent (no TLS session to send it on); 400 keeps the mapping total.
    case errc::tls_handshake_failed: return status::bad_request;
    }
    return status::internal_server_error;
}

std::string error_message(const error_details& details)
{
    if (!details.message.empty()) {
        return std::string(details.message);
    }
    auto message = base_message(details);
    append_detail(message, details.detail);
    return message;
}

string_response make_error_response(const error_details& details, bool json, unsigned version)
{
    const auto code =
        details.status != 0 ? static_cast<status>(details.status) : status_for(details.error);
    const auto message = error_message(details);

    string_response res{code, version};
    res.set("X-Portico-Error", to_string(details.error));
    res.set(field::content_type, json ? "application/json" : "text/html; charset=utf-8");
    // The page reflects request data; a browser must not sniff JSON into HTML.
    res.set("X-Content-Type-Options", "nosniff");
    res.set(field::cache_control, "no-store");
    res.set(field::connection, "close");
    res.body() = json ? render_json(details, code, message) : render_html(details, code, message);
    res.prepare_payload();
    return res;
}

string_response make_redirect_response(std::string_view location, unsigned version,
                                       bool keep_alive)
{
    string_response res{status::permanent_redirect, version};
    res.set(field::location, location);
    res.set(field::content_type, "text/plain; charset=utf-8");
    res.set(field::cache_control, "no-store");
    res.body() = std::string("Redirecting to ") + std::string(location) + "\n";
    res.keep_alive(keep_alive);
    res.prepare_payload();
    return res;
}

} // namespace portico::http
