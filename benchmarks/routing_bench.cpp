// route_table::match against tables of 10 and 10,000 routes: the figures for the two sizes
// should be the same, since lookup cost depends on the request, not on the table.

#include "portico/routing/route_table.hpp"

#include <benchmark/benchmark.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace {

using portico::routing::match_kind;
using portico::routing::route_table;

namespace config = portico::config;

constexpr std::string_view filler_paths[] = {"/", "/api", "/api/v1", "/api/v1/users", "/static"};

config::route make_route(std::string host, std::string path)
{
    config::route r;
    r.host = std::move(host);
    r.path = std::move(path);
    r.to.host = "127.0.0.1";
    r.to.port = 5000;
    return r;
}

/**
 * `count` routes: the ones the benchmarks hit (an exact host with nested prefixes and a
 * wildcard host), then filler hosts, alternately exact and wildcard, with several paths each.
 */
route_table make_table(std::size_t count)
{
    config::config cfg;
    cfg.routes.push_back(make_route("app.localhost", "/"));
    cfg.routes.push_back(make_route("app.localhost", "/api"));
    cfg.routes.push_back(make_route("app.localhost", "/api/v1/users"));
    cfg.routes.push_back(make_route("*.preview.localhost", "/"));
    cfg.routes.push_back(make_route("*.preview.localhost", "/api"));
    for (std::size_t i = 0; cfg.routes.size() < count; ++i) {
        const auto host_index = i / std::size(filler_paths);
        const auto host = host_index % 2 == 0 ? "svc" + std::to_string(host_index) + ".localhost"
                                              : "*.env" + std::to_string(host_index) + ".localhost";
        cfg.routes.push_back(
            make_route(host, std::string(filler_paths[i % std::size(filler_paths)])));
    }
    for (std::size_t i = 0; i < cfg.routes.size(); ++i) {
        cfg.routes[i].number = i + 1;
    }
    return route_table(cfg);
}

// Runs match(host, path) in a loop, after checking that it resolves as the benchmark claims.
void run_match(benchmark::State& state, std::string_view host, std::string_view path,
               match_kind expected)
{
    const auto table = make_table(static_cast<std::size_t>(state.range(0)));
    if (table.match(host, path).kind != expected) {
        state.SkipWithError("unexpected match result");
        return;
    }
    for (auto _ : state) {
        auto m = table.match(host, path);
        benchmark::DoNotOptimize(m);
    }
}

void bm_match_exact(benchmark::State& state)
{
    run_match(state, "app.localhost:7080", "/index.html", match_kind::route);
}

void bm_match_wildcard(benchmark::State& state)
{
    run_match(state, "feature-42.preview.localhost", "/api/items", match_kind::route);
}

void bm_match_deep_path(benchmark::State& state)
{
    run_match(state, "app.localhost", "/api/v1/users/42/orders/7/items/3/notes", match_kind::route);
}

void bm_match_miss(benchmark::State& state)
{
    run_match(state, "unknown.dev.example.test", "/api/x", match_kind::none);
}

void bm_split_request_target(benchmark::State& state)
{
    for (auto _ : state) {
        auto split = portico::routing::split_request_target("/api/v1/users/%7Eme/../42?q=1&x=2");
        benchmark::DoNotOptimize(split);
    }
}

// What a browser asks a dev server for: nothing to decode or remove.
void bm_split_request_target_plain(benchmark::State& state)
{
    for (auto _ : state) {
        auto split = portico::routing::split_request_target("/src/components/App.tsx?t=1718000000000");
        benchmark::DoNotOptimize(split);
    }
}

BENCHMARK(bm_match_exact)->Arg(10)->Arg(10000);
BENCHMARK(bm_match_wildcard)->Arg(10)->Arg(10000);
BENCHMARK(bm_match_deep_path)->Arg(10)->Arg(10000);
BENCHMARK(bm_match_miss)->Arg(10)->Arg(10000);
BENCHMARK(bm_split_request_target);
BENCHMARK(bm_split_request_target_plain);

} // namespace

BENCHMARK_MAIN();
