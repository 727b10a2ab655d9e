// The per-request work on a request head before anything is sent upstream, on the head a
// desktop browser sends for a page: the raw-byte checks (head end, smuggling-prone bytes),
// Beast's parse, and the header policy that rewrites the head for the backend. The steps
// are measured alone and together, so a change in one shows where it belongs.

#include "portico/http/header_policy.hpp"
#include "portico/http/request_checks.hpp"

#include <benchmark/benchmark.h>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace {

namespace http = portico::http;
namespace beast = boost::beast;

constexpr std::string_view browser_head =
    "GET /src/components/App.tsx?t=1718000000000 HTTP/1.1\r\n"
    "Host: app.localhost:7080\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"125\", \"Not.A/Brand\";v=\"24\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Safari/537.36\r\n"
    "sec-ch-ua-platform: \"Linux\"\r\n"
    "Accept: */*\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Sec-Fetch-Mode: cors\r\n"
    "Sec-Fetch-Dest: script\r\n"
    "Referer: http://app.localhost:7080/\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\n"
    "Cookie: session=4f9c2a7d1e8b3c6a5d0f; theme=dark; _ga=GA1.1.123456789.1717999999\r\n"
    "If-None-Match: W/\"1a2b-3c4d5e6f\"\r\n"
    "\r\n";

using request_parser = beast::http::request_parser<beast::http::empty_body>;

http::forward_facts facts_for(const http::request_head& req)
{
    http::forward_facts facts;
    facts.client_ip = "127.0.0.1";
    facts.original_host = req[http::field::host];
    facts.upstream_host = "127.0.0.1:5173";
    facts.target = req.target();
    return facts;
}

/// Parses `browser_head` as the connection does: the whole head in one `put`.
bool parse(request_parser& parser)
{
    parser.eager(false);
    boost::system::error_code ec;
    parser.put(boost::asio::buffer(browser_head.data(), browser_head.size()), ec);
    return !ec && parser.is_header_done();
}

void bm_raw_checks(benchmark::State& state)
{
    for (auto _ : state) {
        const auto end = http::find_head_end(browser_head);
        const auto defect = http::check_head_bytes(browser_head.substr(0, end));
        benchmark::DoNotOptimize(end);
        benchmark::DoNotOptimize(defect);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * browser_head.size()));
}

void bm_parse(benchmark::State& state)
{
    for (auto _ : state) {
        request_parser parser;
        if (!parse(parser)) {
            state.SkipWithError("the head does not parse");
            return;
        }
        benchmark::DoNotOptimize(parser.get());
    }
}

void bm_prepare_upstream_request(benchmark::State& state)
{
    request_parser parsed;
    if (!parse(parsed)) {
        state.SkipWithError("the head does not parse");
        return;
    }
    const http::request_head original = parsed.get().base();
    const std::pair<std::string, std::string> set[] = {{"X-Env", "dev"}};
    const std::string remove[] = {"X-Debug"};
    const http::header_rule_view rules{set, remove};
    for (auto _ : state) {
        // The copy is part of the measured loop; bm_copy_head shows what it costs alone.
        auto req = original;
        http::prepare_upstream_request(req, facts_for(original), rules);
        benchmark::DoNotOptimize(req);
    }
}

/// The head the proxy writes upstream for a request it need not re-frame, straight from the
/// parsed fields (what it does for most requests, instead of the rewrite above).
void bm_append_upstream_request(benchmark::State& state)
{
    request_parser parsed;
    if (!parse(parsed)) {
        state.SkipWithError("the head does not parse");
        return;
    }
    const auto& req = parsed.get().base();
    const auto facts = facts_for(req);
    std::string out;
    out.reserve(2048);
    for (auto _ : state) {
        out.clear();
        http::append_upstream_request(out, req, facts, {}, false);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
}

void bm_copy_head(benchmark::State& state)
{
    request_parser parsed;
    if (!parse(parsed)) {
        state.SkipWithError("the head does not parse");
        return;
    }
    const http::request_head original = parsed.get().base();
    for (auto _ : state) {
        auto req = original;
        benchmark::DoNotOptimize(req);
    }
}

/// Everything one request head goes through between the socket and the upstream write.
void bm_head_pipeline(benchmark::State& state)
{
    for (auto _ : state) {
        const auto end = http::find_head_end(browser_head);
        if (http::check_head_bytes(browser_head.substr(0, end)) != http::head_defect::none) {
            state.SkipWithError("the head has a defect");
            return;
        }
        request_parser parser;
        if (!parse(parser)) {
            state.SkipWithError("the head does not parse");
            return;
        }
        auto& req = parser.get();
        const auto lines = http::scan_request_lines(req.base());
        const bool json = lines.prefers_json;
        const std::string host(lines.host);
        auto facts = facts_for(req.base());
        facts.original_host = host;
        facts.upgrade = lines.tunnel_upgrade;
        http::prepare_upstream_request(req.base(), facts, {});
        benchmark::DoNotOptimize(json);
        benchmark::DoNotOptimize(req);
    }
}

BENCHMARK(bm_raw_checks);
BENCHMARK(bm_parse);
BENCHMARK(bm_copy_head);
BENCHMARK(bm_prepare_upstream_request);
BENCHMARK(bm_append_upstream_request);
BENCHMARK(bm_head_pipeline);

} // namespace

BENCHMARK_MAIN();
