#include "portico/admin/observatory.hpp"

#include <algorithm>

namespace portico::admin {

std::string_view to_string(backend_state s) noexcept
{
    switch (s) {
    case backend_state::up: return "up";
    case backend_state::down: return "down";
    case backend_state::exposed: return "exposed";
    case backend_state::unknown: break;
    }
    // SPEC's words are up, down and exposed: a backend no probe has reached yet (just
    // added by a reload) is not known to accept connections.
    return "down";
}

std::uint64_t route_counters::requests() const noexcept
{
    std::uint64_t n = 0;
    for (const auto& [code, count] : by_status) {
        n += count;
    }
    return n;
}

void stats_totals::merge(const stats_totals& other)
{
    for (const auto& [name, counters] : other.routes) {
        auto& mine = routes[name];
        for (const auto& [code, count] : counters.by_status) {
            mine.by_status[code] += count;
        }
        for (const auto& [error, count] : counters.upstream_errors) {
            mine.upstream_errors[error] += count;
        }
        mine.errors += counters.errors;
        mine.admin_requests += counters.admin_requests;
        mine.admin_errors += counters.admin_errors;
    }
    for (std::size_t i = 0; i < duration_counts.size(); ++i) {
        duration_counts[i] += other.duration_counts[i];
    }
    duration_sum += other.duration_sum;
    duration_count += other.duration_count;
    bytes_in += other.bytes_in;
    bytes_out += other.bytes_out;
}

namespace {

/// `text`, or its first bytes and "..." when it is longer than `recent_text_limit`.
void assign_bounded(std::string& to, std::string_view text)
{
    constexpr std::string_view more = "...";
    if (text.size() <= worker_stats::recent_text_limit) {
        to.assign(text);
        return;
    }
    to.assign(text.substr(0, worker_stats::recent_text_limit - more.size()));
    to += more;
}

} // namespace

void worker_stats::record(const log::access_record& r, std::string_view portico_error,
                          std::uint64_t bytes_in, bool listed)
{
    const double seconds = r.duration_ms / 1000.0;
    const auto bucket = static_cast<std::size_t>(
        std::lower_bound(duration_buckets.begin(), duration_buckets.end(), seconds) -
        duration_buckets.begin());

    std::lock_guard lock(mutex_);
    // Consecutive requests mostly name one route: comparing with the last name is cheaper
    // than hashing it. Map elements stay put when the map grows, and none is ever erased.
    if (last_route_ == nullptr || r.route != last_route_name_) {
        auto it = totals_.routes.find(r.route);
        if (it == totals_.routes.end()) {
            it = totals_.routes.emplace(std::string(r.route), route_counters{}).first;
        }
        last_route_ = &it->second;
        last_route_name_.assign(r.route);
    }
    auto& route = *last_route_;
    ++route.by_status[r.status];
    const bool error = r.status >= 500 || !portico_error.empty();
    route.errors += error ? 1 : 0;
    if (!listed) {
        ++route.admin_requests;
        route.admin_errors += error ? 1 : 0;
    }
    if (portico_error.starts_with("upstream_")) {
        auto e = route.upstream_errors.find(portico_error);
        if (e == route.upstream_errors.end()) {
            route.upstream_errors.emplace(std::string(portico_error), 1);
        } else {
            ++e->second;
        }
    }
    ++totals_.duration_counts[bucket];
    totals_.duration_sum += seconds;
    ++totals_.duration_count;
    totals_.bytes_in += bytes_in;
    totals_.bytes_out += r.bytes;

    if (!listed) {
        return;
    }
    if (ring_.empty()) {
        ring_.resize(recent_capacity);
    }
    auto& s = ring_[ring_next_];
    ring_next_ = (ring_next_ + 1) % recent_capacity;
    ring_size_ = std::min(ring_size_ + 1, recent_capacity);
    s.time = r.time;
    s.client.assign(r.client);
    assign_bounded(s.host, r.host);
    s.method.assign(r.method);
    assign_bounded(s.target, r.target);
    s.proto.assign(r.proto);
    s.status = r.status;
    s.bytes = r.bytes;
    s.duration_ms = r.duration_ms;
    s.route.assign(r.route);
    s.backend.assign(r.backend);
}

stats_totals worker_stats::totals() const
{
    std::lock_guard lock(mutex_);
    return totals_;
}

std::vector<request_sample> worker_stats::recent() const
{
    std::lock_guard lock(mutex_);
    std::vector<request_sample> out;
    out.reserve(ring_size_);
    const std::size_t first = (ring_next_ + recent_capacity - ring_size_) % recent_capacity;
    for (std::size_t i = 0; i < ring_size_; ++i) {
        out.push_back(ring_[(first + i) % recent_capacity]);
    }
    return out;
}

observatory::observatory() : started_(std::chrono::system_clock::now()) {}

observatory::~observatory() = default;

worker_stats& observatory::add_worker()
{
    std::lock_guard lock(mutex_);
    workers_.push_back(std::make_unique<worker_stats>());
    return *workers_.back();
}

stats_totals observatory::totals() const
{
    std::lock_guard lock(mutex_);
    stats_totals sum;
    for (const auto& w : workers_) {
        sum.merge(w->totals());
    }
    return sum;
}

std::vector<request_sample> observatory::recent(std::size_t limit) const
{
    std::vector<request_sample> all;
    {
        std::lock_guard lock(mutex_);
        for (const auto& w : workers_) {
            auto part = w->recent();
            std::move(part.begin(), part.end(), std::back_inserter(all));
        }
    }
    std::stable_sort(all.begin(), all.end(),
                     [](const request_sample& a, const request_sample& b) { return a.time > b.time; });
    if (all.size() > limit) {
        all.resize(limit);
    }
    return all;
}

std::int64_t observatory::active_connections() const
{
    std::lock_guard lock(mutex_);
    std::int64_t n = 0;
    for (const auto& w : workers_) {
        n += w->connections();
    }
    return n;
}

std::int64_t observatory::active_tunnels() const
{
    std::lock_guard lock(mutex_);
    std::int64_t n = 0;
    for (const auto& w : workers_) {
        n += w->tunnels();
    }
    return n;
}

void observatory::observe_backend(const std::string& to, backend_state state)
{
    std::lock_guard lock(mutex_);
    backends_[to] = state;
}

backend_state observatory::backend(const std::string& to) const
{
    std::lock_guard lock(mutex_);
    const auto it = backends_.find(to);
    return it == backends_.end() ? backend_state::unknown : it->second;
}

std::map<std::string, backend_state> observatory::backends() const
{
    std::lock_guard lock(mutex_);
    return backends_;
}

void observatory::record_reload(bool ok, std::string error)
{
    std::lock_guard lock(mutex_);
    ++(ok ? reloads_.succeeded : reloads_.failed);
    reloads_.last_time = std::chrono::system_clock::now();
    reloads_.last_error = ok ? std::string() : std::move(error);
}

reload_status observatory::reloads() const
{
    std::lock_guard lock(mutex_);
    return reloads_;
}

void observatory::set_certificate_counter(std::function<std::uint64_t()> counter)
{
    std::lock_guard lock(mutex_);
    if (certificate_counter_) {
        retired_certificates_ += certificate_counter_();
    }
    certificate_counter_ = std::move(counter);
}

std::uint64_t observatory::certificates_issued() const
{
    std::lock_guard lock(mutex_);
    return retired_certificates_ + (certificate_counter_ ? certificate_counter_() : 0);
}

} // namespace portico::admin
