#include "portico/admin/pages.hpp"

#include "portico/admin/probe.hpp"

#include "portico/core/uri.hpp"
#include "portico/core/utf8.hpp"
#include "portico/http/error_page.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace portico::admin {
namespace {

namespace json = boost::json;

using http::html_escape;

std::string json_text(const json::value& v)
{
    auto text = json::serialize(v);
    // Recent requests carry targets and Hosts as clients sent them, in any bytes; outside
    // strings JSON text is ASCII, so only string contents change.
    utf8::make_valid(text);
    text += '\n';
    return text;
}

page_response json_response(const json::value& v, unsigned status = 200)
{
    return {status, "application/json", json_text(v), {}, {}};
}

backend_state state_of(const page_context& ctx, const config::route& r)
{
    return ctx.obs.backend(r.to.text);
}

/// The URL that opens a route, or "" for wildcard hosts (no single name to open).
std::string route_url(const config::route& r, const page_request& req)
{
    if (r.is_wildcard()) {
        return {};
    }
    const bool https_only = r.tls_passthrough || r.redirect_https;
    const std::string_view scheme = https_only ? "https" : req.scheme;
    // A `tls: off` listener's port would close on the ClientHello.
    const auto port = https_only && !req.https_port.empty() ? req.https_port : req.port;
    const bool default_port = port.empty() || (scheme == "http" && port == "80") ||
                              (scheme == "https" && port == "443");
    return fmt::format("{}://{}{}{}{}", scheme, r.host, default_port ? "" : ":",
                       default_port ? std::string_view() : port,
                       r.path == "/" ? "/" : r.path + "/");
}

/// A recent request as the JSON access log writes it.
std::string sample_json(const request_sample& s)
{
    log::access_record a;
    a.time = s.time;
    a.client = s.client;
    a.host = s.host;
    a.method = s.method;
    a.target = s.target;
    a.proto = s.proto;
    a.status = s.status;
    a.bytes = s.bytes;
    a.duration_ms = s.duration_ms;
    a.route = s.route;
    a.backend = s.backend;
    return log::format_access_json(a);
}

page_response api_routes(const page_request& req, const page_context& ctx)
{
    const auto totals = ctx.obs.totals();
    json::array routes;
    for (const auto& r : ctx.table.routes()) {
        json::object o;
        o["host"] = r.host;
        o["path"] = r.path;
        o["to"] = r.to.text;
        o["state"] = to_string(state_of(ctx, r));
        const auto name = r.name();
        o["route"] = name;
        const auto it = totals.routes.find(name);
        o["requests"] = it == totals.routes.end() ? 0 : it->second.requests();
        o["errors"] = it == totals.routes.end() ? 0 : it->second.errors;
        if (const auto url = route_url(r, req); !url.empty()) {
            o["url"] = url;
        }
        routes.push_back(std::move(o));
    }
    return json_response(json::object{{"routes", std::move(routes)}});
}

page_response api_health(const page_context& ctx)
{
    json::array backends;
    for (const auto& b : backends_of(ctx.table.routes())) {
        backends.push_back(json::object{{"to", b.text}, {"state", to_string(ctx.obs.backend(b.text))}});
    }
    const auto reloads = ctx.obs.reloads();
    json::object config;
    config["file"] = ctx.cfg.source.empty() ? "built-in default" : ctx.cfg.source.string();
    config["reloads"] = reloads.succeeded;
    config["reload_failures"] = reloads.failed;
    if (reloads.last_error.empty()) {
        config["last_error"] = nullptr;
    } else {
        config["last_error"] = reloads.last_error;
    }
    const auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::system_clock::now() - ctx.obs.started());
    return json_response(json::object{{"status", "ok"},
                                      {"version", ctx.version},
                                      {"uptime_seconds", uptime.count()},
                                      {"connections", ctx.obs.active_connections()},
                                      {"config", std::move(config)},
                                      {"backends", std::move(backends)}});
}

page_response api_requests(const page_context& ctx)
{
    // Built as text so each entry is exactly an access-log line's object.
    std::string body = "{\"requests\":[";
    bool first = true;
    for (const auto& s : ctx.obs.recent()) {
        body += first ? "" : ",";
        body += sample_json(s);
        first = false;
    }
    body += "]}\n";
    return {200, "application/json", std::move(body), {}, {}};
}

/// Escapes a Prometheus label value.
std::string label(std::string_view v)
{
    std::string out;
    out.reserve(v.size());
    for (const char c : v) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        default: out += c; break;
        }
    }
    return out;
}

std::string_view state_class(backend_state s)
{
    switch (s) {
    case backend_state::up: return "up";
    case backend_state::exposed: return "exposed";
    case backend_state::down: return "down";
    case backend_state::unknown: break;
    }
    return "unknown";
}

std::string_view state_words(backend_state s)
{
    switch (s) {
    case backend_state::up: return "listening";
    case backend_state::exposed: return "exposed to the network";
    case backend_state::down: return "not listening";
    case backend_state::unknown: break;
    }
    return "checking";
}

std::string_view status_class(unsigned status)
{
    if (status >= 500) {
        return "s5";
    }
    if (status >= 400) {
        return "s4";
    }
    if (status >= 300) {
        return "s3";
    }
    return "s2";
}

std::string clock_time(std::chrono::system_clock::time_point t)
{
    // "2026-11-26T08:00:00.123Z" -> "08:00:00"
    const auto full = log::format_time(t);
    return full.size() >= 19 ? full.substr(11, 8) : full;
}

std::string format_duration(double ms)
{
    if (ms < 10) {
        return fmt::format("{:.1f} ms", ms);
    }
    if (ms < 10000) {
        return fmt::format("{:.0f} ms", ms);
    }
    return fmt::format("{:.1f} s", ms / 1000);
}

constexpr std::string_view dashboard_style = R"css(
:root{--bg:#f6f7f9;--card:#fff;--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--accent:#2754c5;
--up:#16794c;--up-bg:#e6f4ec;--down:#b42318;--down-bg:#fdecea;--warn:#93370d;--warn-bg:#fef0c7;
--code:#f2f4f7}
@media (prefers-color-scheme:dark){:root{--bg:#0f1115;--card:#171a21;--fg:#e6e8ee;--muted:#98a2b3;
--line:#2a2f3a;--accent:#7aa2ff;--up:#6ce9a6;--up-bg:#0f2e20;--down:#fda29b;--down-bg:#3a1512;
--warn:#fec84b;--warn-bg:#3a2a08;--code:#1f232c}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);
color:var(--fg)}
header{display:flex;align-items:baseline;gap:16px;flex-wrap:wrap;padding:18px 32px;
border-bottom:1px solid var(--line);background:var(--card)}
header h1{margin:0;font-size:20px;letter-spacing:-.01em}
header .meta{color:var(--muted);font-size:13px}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;margin-bottom:24px;
overflow:hidden}
section h2{margin:0;padding:14px 20px;font-size:15px;border-bottom:1px solid var(--line);
display:flex;justify-content:space-between;align-items:baseline}
section h2 small{font-weight:400;color:var(--muted);font-size:12px}
table{width:100%;border-collapse:collapse}
th,td{text-align:left;padding:9px 20px;border-bottom:1px solid var(--line);vertical-align:top}
tr:last-child td{border-bottom:0}
th{font-size:12px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:var(--code);border-radius:8px;padding:12px 14px;margin:0;overflow-x:auto}
a{color:var(--accent);text-decoration:none}
a:hover{text-decoration:underline}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;
white-space:nowrap}
.badge.up{color:var(--up);background:var(--up-bg)}
.badge.down{color:var(--down);background:var(--down-bg)}
.badge.exposed,.badge.unknown{color:var(--warn);background:var(--warn-bg)}
.hint{display:block;color:var(--muted);font-size:12px;margin-top:2px}
.stats{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:24px}
.stat{flex:1 1 140px;background:var(--card);border:1px solid var(--line);border-radius:12px;
padding:12px 16px}
.stat b{display:block;font-size:22px;font-variant-numeric:tabular-nums}
.stat span{color:var(--muted);font-size:12px}
.alert{border-color:var(--down);}
.alert h2{color:var(--down)}
.alert pre{margin:14px 20px 18px}
.s2{color:var(--up)}.s3{color:var(--accent)}.s4{color:var(--warn)}.s5{color:var(--down)}
.empty{padding:18px 20px;color:var(--muted)}
.empty pre{margin-top:10px;color:var(--fg)}
td.path{max-width:420px;overflow-wrap:anywhere}
)css";

// Inline, so that the browser asks for no /favicon.ico (which would crowd the request list).
constexpr std::string_view favicon =
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Crect width='16' height='16' rx='4' fill='%232754c5'/%3E%3Cpath d='M4 13V3h5a3 3 0 0 1 0 "
    "6H4' stroke='white' stroke-width='2' fill='none'/%3E%3C/svg%3E";

// Live updates: the page fetches itself and swaps <header> (the listeners, which a reload
// may change) and <main>, so there is one renderer (this file) and the page stays readable
// without JavaScript.
constexpr std::string_view dashboard_script = R"js(
(function(){
  var busy=false;
  function refresh(){
    if(busy||document.hidden)return;
    busy=true;
    function mark(text){var live=document.getElementById("live");if(live)live.textContent=text;}
    fetch(location.pathname,{cache:"no-store",headers:{Accept:"text/html"}})
      .then(function(r){if(!r.ok)throw "HTTP "+r.status;return r.text()})
      .then(function(t){
        var doc=new DOMParser().parseFromString(t,"text/html");
        ["header","main"].forEach(function(part){
          var next=doc.querySelector(part),cur=document.querySelector(part);
          if(next&&cur)cur.replaceWith(next);
        });
        mark("live");
      })
      .catch(function(e){mark(typeof e==="string"?"offline ("+e+")":"offline")})
      .finally(function(){busy=false});
  }
  setInterval(refresh,1000);
})();
)js";

std::string render_dashboard(const page_request& req, const page_context& ctx)
{
    const auto totals = ctx.obs.totals();
    const auto reloads = ctx.obs.reloads();
    const auto recent = ctx.obs.recent();
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;
    for (const auto& [name, c] : totals.routes) {
        requests += c.requests() - c.admin_requests; // less the dashboard's own polling
        errors += c.errors - c.admin_errors;
    }

    std::string out;
    auto it = std::back_inserter(out);
    std::string listeners;
    for (const auto& l : ctx.listening) {
        listeners += (listeners.empty() ? "" : ", ") + l;
    }
    fmt::format_to(it,
                   "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                   "<title>portico</title><link rel=\"icon\" href=\"{}\"><style>{}</style></head>"
                   "<body>\n"
                   "<header><h1>portico</h1><span class=\"meta\">{} &middot; listening on {} "
                   "&middot; config {} &middot; <span id=\"live\">static</span></span></header>\n"
                   "<main>\n",
                   favicon, dashboard_style, html_escape(ctx.version), html_escape(listeners),
                   html_escape(ctx.cfg.source.empty() ? "built-in default"
                                                      : ctx.cfg.source.filename().string()));

    if (!reloads.last_error.empty()) {
        fmt::format_to(it,
                       "<section class=\"alert\" id=\"config-error\"><h2>The last edit of the "
                       "configuration was not applied<small>{}; the previous routes are still "
                       "served</small></h2><pre>{}</pre></section>\n",
                       reloads.last_time ? "at " + clock_time(*reloads.last_time) : "",
                       html_escape(reloads.last_error));
    }

    fmt::format_to(it,
                   "<div class=\"stats\">"
                   "<div class=\"stat\"><b>{}</b><span>routes</span></div>"
                   "<div class=\"stat\"><b>{}</b><span>requests</span></div>"
                   "<div class=\"stat\"><b>{}</b><span>errors</span></div>"
                   "<div class=\"stat\"><b>{}</b><span>open connections</span></div>"
                   "<div class=\"stat\"><b>{}</b><span>certificates issued</span></div>"
                   "<div class=\"stat\"><b>{}</b><span>reloads</span></div></div>\n",
                   ctx.table.routes().size(), requests, errors, ctx.obs.active_connections(),
                   ctx.obs.certificates_issued(), reloads.succeeded);

    fmt::format_to(it, "<section id=\"routes\"><h2>Routes<small>admin: {}</small></h2>\n",
                   html_escape(ctx.table.admin_host()));
    if (ctx.table.routes().empty()) {
        fmt::format_to(it,
                       "<div class=\"empty\">No routes yet. {}<pre>routes:\n"
                       "  - host: app.localhost\n    to: 127.0.0.1:5173</pre></div>\n",
                       http::how_to_add_a_route(ctx.cfg.source.native()));
    } else {
        out += "<table><thead><tr><th>Host</th><th>Path</th><th>Target</th><th>Backend</th>"
               "<th class=\"num\">Requests</th><th class=\"num\">Errors</th></tr></thead><tbody>\n";
        for (const auto& r : ctx.table.routes()) {
            const auto state = state_of(ctx, r);
            const auto url = route_url(r, req);
            const auto name = r.name();
            const auto counters = totals.routes.find(name);
            std::string host_cell = url.empty()
                                        ? fmt::format("<code>{}</code>", html_escape(r.host))
                                        : fmt::format("<a href=\"{}\">{}</a>", html_escape(url),
                                                      html_escape(r.host));
            std::string hint;
            if (state == backend_state::down) {
                hint = r.to.scheme == config::backend_scheme::unix_socket
                           ? fmt::format("start your dev server on {}", r.to.socket_path.string())
                           : fmt::format("start your dev server on {}", r.to.authority());
            } else if (state == backend_state::exposed) {
                hint = fmt::format("port {} is also open on a non-loopback address: bind the dev "
                                   "server to 127.0.0.1",
                                   r.to.port);
            }
            fmt::format_to(
                it,
                "<tr data-route=\"{}\"><td>{}{}</td><td class=\"path\"><code>{}</code></td>"
                "<td><code>{}</code></td><td><span class=\"badge {}\">{}</span>{}</td>"
                "<td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                html_escape(name), host_cell, r.tls_passthrough ? " <small>(TLS passthrough)</small>" : "",
                html_escape(r.path), html_escape(r.to.text), state_class(state), state_words(state),
                hint.empty() ? "" : "<span class=\"hint\">" + html_escape(hint) + "</span>",
                counters == totals.routes.end() ? 0 : counters->second.requests(),
                counters == totals.routes.end() ? 0 : counters->second.errors);
        }
        out += "</tbody></table>\n";
    }
    out += "</section>\n";

    fmt::format_to(it, "<section id=\"requests\"><h2>Recent requests<small>last {}, newest "
                       "first; the admin host's own are not listed</small></h2>\n",
                   worker_stats::recent_capacity);
    if (recent.empty()) {
        out += "<div class=\"empty\">No requests yet.</div>\n";
    } else {
        out += "<table><thead><tr><th>Time</th><th>Status</th><th>Method</th><th>Host</th>"
               "<th>Path</th><th class=\"num\">Duration</th><th>Backend</th></tr></thead><tbody>\n";
        for (const auto& s : recent) {
            fmt::format_to(it,
                           "<tr><td>{}</td><td class=\"{}\"><b>{}</b></td><td>{}</td><td>{}</td>"
                           "<td class=\"path\"><code>{}</code></td><td class=\"num\">{}</td>"
                           "<td><code>{}</code></td></tr>\n",
                           clock_time(s.time), status_class(s.status), s.status,
                           html_escape(s.method), html_escape(s.host), html_escape(s.target),
                           format_duration(s.duration_ms),
                           html_escape(s.backend.empty() ? "-" : s.backend));
        }
        out += "</tbody></table>\n";
    }
    out += "</section>\n";
    fmt::format_to(it,
                   "<p class=\"meta\" style=\"color:var(--muted);font-size:12px\">JSON: "
                   "<a href=\"/api/routes\">/api/routes</a> &middot; <a href=\"/api/health\">"
                   "/api/health</a> &middot; <a href=\"/api/requests\">/api/requests</a> &middot; "
                   "<a href=\"/metrics\">/metrics</a></p>\n</main>\n<script>{}</script>\n"
                   "</body></html>\n",
                   dashboard_script);
    return out;
}

/// The path of an origin-form target without its query.
std::string_view path_of(std::string_view target)
{
    return target.substr(0, target.find('?'));
}

/// Parses "scheme://host[:port]" at the start of an Origin or Referer value.
bool parse_origin(std::string_view value, std::string_view& scheme, std::string_view& host,
                  std::uint16_t& port)
{
    const auto sep = value.find("://");
    if (sep == std::string_view::npos) {
        return false;
    }
    // Schemes compare without case (RFC 3986 §3.1), hosts too (below).
    scheme = value.substr(0, sep);
    const bool secure = boost::beast::iequals(scheme, "https");
    if (!secure && !boost::beast::iequals(scheme, "http")) {
        return false;
    }
    auto authority = value.substr(sep + 3);
    authority = authority.substr(0, authority.find_first_of("/?#"));
    if (authority.empty() || authority.find('@') != std::string_view::npos) {
        return false;
    }
    std::string_view port_text;
    if (authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        host = authority.substr(0, close + 1);
        const auto rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                return false;
            }
            port_text = rest.substr(1);
        }
    } else {
        const auto colon = authority.rfind(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            port_text = authority.substr(colon + 1);
        }
    }
    if (port_text.empty()) {
        port = secure ? 443 : 80;
        return true;
    }
    unsigned p = 0;
    const auto r = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
    if (r.ec != std::errc{} || r.ptr != port_text.data() + port_text.size() || p == 0 || p > 65535) {
        return false;
    }
    port = static_cast<std::uint16_t>(p);
    return true;
}

} // namespace

std::string_view build_version() noexcept { return PORTICO_VERSION; }

std::string render_metrics(const page_context& ctx)
{
    const auto totals = ctx.obs.totals();
    const auto reloads = ctx.obs.reloads();
    std::string out;
    auto it = std::back_inserter(out);

    out += "# HELP portico_requests_total Requests answered, by route and status code.\n"
           "# TYPE portico_requests_total counter\n";
    for (const auto& [name, c] : totals.routes) {
        for (const auto& [code, count] : c.by_status) {
            fmt::format_to(it, "portico_requests_total{{route=\"{}\",code=\"{}\"}} {}\n",
                           label(name), code, count);
        }
    }

    out += "# HELP portico_request_duration_seconds Time from request head to the end of the "
           "response.\n# TYPE portico_request_duration_seconds histogram\n";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < duration_buckets.size(); ++i) {
        cumulative += totals.duration_counts[i];
        fmt::format_to(it, "portico_request_duration_seconds_bucket{{le=\"{}\"}} {}\n",
                       duration_buckets[i], cumulative);
    }
    cumulative += totals.duration_counts.back();
    fmt::format_to(it, "portico_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n", cumulative);
    fmt::format_to(it, "portico_request_duration_seconds_sum {}\n", totals.duration_sum);
    fmt::format_to(it, "portico_request_duration_seconds_count {}\n", totals.duration_count);

    out += "# HELP portico_upstream_errors_total Failures reaching or reading a backend.\n"
           "# TYPE portico_upstream_errors_total counter\n";
    for (const auto& [name, c] : totals.routes) {
        for (const auto& [error, count] : c.upstream_errors) {
            fmt::format_to(it, "portico_upstream_errors_total{{route=\"{}\",error=\"{}\"}} {}\n",
                           label(name), label(error), count);
        }
    }

    fmt::format_to(it,
                   "# HELP portico_received_bytes_total Request body bytes received from clients.\n"
                   "# TYPE portico_received_bytes_total counter\nportico_received_bytes_total {}\n"
                   "# HELP portico_sent_bytes_total Response body bytes sent to clients.\n"
                   "# TYPE portico_sent_bytes_total counter\nportico_sent_bytes_total {}\n",
                   totals.bytes_in, totals.bytes_out);
    fmt::format_to(it,
                   "# HELP portico_connections_active Open client connections.\n"
                   "# TYPE portico_connections_active gauge\nportico_connections_active {}\n"
                   "# HELP portico_tunnels_active Open tunnels (WebSocket, upgrades, TLS "
                   "passthrough).\n# TYPE portico_tunnels_active gauge\nportico_tunnels_active {}\n",
                   ctx.obs.active_connections(), ctx.obs.active_tunnels());
    fmt::format_to(it,
                   "# HELP portico_certificates_issued_total Leaf certificates issued by the local "
                   "CA.\n# TYPE portico_certificates_issued_total counter\n"
                   "portico_certificates_issued_total {}\n",
                   ctx.obs.certificates_issued());
    fmt::format_to(it,
                   "# HELP portico_config_reloads_total Configuration reloads, by result.\n"
                   "# TYPE portico_config_reloads_total counter\n"
                   "portico_config_reloads_total{{result=\"success\"}} {}\n"
                   "portico_config_reloads_total{{result=\"failure\"}} {}\n",
                   reloads.succeeded, reloads.failed);
    out += "# HELP portico_backend_up Whether a backend accepts connections (1) or not (0).\n"
           "# TYPE portico_backend_up gauge\n";
    for (const auto& b : backends_of(ctx.table.routes())) {
        const auto state = ctx.obs.backend(b.text);
        const bool up = state == backend_state::up || state == backend_state::exposed;
        fmt::format_to(it, "portico_backend_up{{to=\"{}\"}} {}\n", label(b.text), up ? 1 : 0);
    }
    fmt::format_to(it,
                   "# HELP portico_build_info Build information.\n# TYPE portico_build_info gauge\n"
                   "portico_build_info{{version=\"{}\"}} 1\n",
                   label(ctx.version));
    return out;
}

page_response respond(const page_request& req, const page_context& ctx)
{
    const auto path = path_of(req.target);
    const bool known = path == "/" || path == "/api/routes" || path == "/api/health" ||
                       path == "/api/requests" || path == "/metrics";
    if (known && req.method != "GET" && req.method != "HEAD") {
        return {405, {}, {}, "GET, HEAD", "The portico admin is read-only: use GET or HEAD."};
    }
    if (path == "/") {
        return {200, "text/html; charset=utf-8", render_dashboard(req, ctx), {}, {}};
    }
    if (path == "/api/routes") {
        return api_routes(req, ctx);
    }
    if (path == "/api/health") {
        return api_health(ctx);
    }
    if (path == "/api/requests") {
        return api_requests(ctx);
    }
    if (path == "/metrics") {
        return {200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(ctx), {}, {}};
    }
    return {404, {}, {}, {},
            fmt::format("The portico admin has no page at {}: it serves / (the dashboard), "
                        "/api/routes, /api/health, /api/requests and /metrics.",
                        path)};
}

bool is_allowed_origin(std::string_view value, std::string_view admin_host,
                       std::span<const std::uint16_t> ports)
{
    std::string_view scheme;
    std::string_view host;
    std::uint16_t port = 0;
    if (!parse_origin(value, scheme, host, port)) {
        return false;
    }
    const auto normalised = uri::normalize_host(host);
    if (!normalised) {
        return false;
    }
    const auto& h = *normalised;
    const bool own_name = h == admin_host || h == "localhost" || h == "127.0.0.1" ||
                          h == "[::1]" || h == "::1";
    if (!own_name) {
        return false;
    }
    for (const auto p : ports) {
        if (p == port) {
            return true;
        }
    }
    return false;
}

} // namespace portico::admin
