// The per-response work on a backend's response head before it goes to the client: the
// in-place parse (`parse_simple_response`) and writing the head the client receives
// (`append_downstream_response`), on two heads: the one the bench's nginx backend sends for a
// small file, and a dev server's (Vite) for a module, with more and longer fields.

#include "portico/http/header_policy.hpp"
#include "portico/http/response_head.hpp"

#include <benchmark/benchmark.h>

#include <string>
#include <string_view>

namespace {

namespace http = portico::http;

constexpr std::string_view nginx_head = "HTTP/1.1 200 OK\r\n"
                                        "Server: nginx/1.22.1\r\n"
                                        "Date: Thu, 26 Nov 2026 20:07:28 GMT\r\n"
                                        "Content-Type: text/plain\r\n"
                                        "Content-Length: 5\r\n"
                                        "Connection: keep-alive\r\n"
                                        "\r\n";

constexpr std::string_view dev_server_head =
    "HTTP/1.1 200 OK\r\n"
    "Vary: Origin\r\n"
    "Access-Control-Allow-Origin: http://app.localhost:7080\r\n"
    "Content-Type: text/javascript\r\n"
    "Cache-Control: no-cache\r\n"
    "Etag: W/\"1a2b-3c4d5e6f7a8b9c0d\"\r\n"
    "Date: Thu, 26 Nov 2026 20:07:28 GMT\r\n"
    "Connection: keep-alive\r\n"
    "Keep-Alive: timeout=5\r\n"
    "Content-Length: 4817\r\n"
    "\r\n";

void parse(benchmark::State& state, std::string_view head)
{
    http::simple_response res;
    for (auto _ : state) {
        benchmark::DoNotOptimize(http::parse_simple_response(head, res));
        benchmark::ClobberMemory();
    }
}

void parse_and_write(benchmark::State& state, std::string_view head)
{
    http::simple_response res;
    std::string out;
    out.reserve(1024);
    for (auto _ : state) {
        out.clear();
        http::parse_simple_response(head, res);
        http::append_downstream_response(out, res, 11, true, {});
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
}

void bm_parse_nginx(benchmark::State& state) { parse(state, nginx_head); }
void bm_parse_dev_server(benchmark::State& state) { parse(state, dev_server_head); }
void bm_parse_and_write_nginx(benchmark::State& state) { parse_and_write(state, nginx_head); }
void bm_parse_and_write_dev_server(benchmark::State& state)
{
    parse_and_write(state, dev_server_head);
}

} // namespace

BENCHMARK(bm_parse_nginx);
BENCHMARK(bm_parse_dev_server);
BENCHMARK(bm_parse_and_write_nginx);
BENCHMARK(bm_parse_and_write_dev_server);

BENCHMARK_MAIN();
