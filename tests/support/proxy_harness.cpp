#include "support/proxy_harness.hpp"

#include "portico/config/config.hpp"

#include <stdexcept>

namespace portico::test {

config::config proxy_harness::prepare(const std::string& yaml)
{
    std::string text = yaml;
    if (text.find("listen:") == std::string::npos) {
        text = "listen: [127.0.0.1:0]\n" + text;
    }
    // Each test gets its own CA, never the user's.
    if (text.find("tls:") == std::string::npos) {
        text = "tls: { ca_dir: " + (dir_.path() / "ca").string() + " }\n" + text;
    }
    auto loaded = config::parse(text, dir_.path() / "portico.yaml");
    if (!loaded.ok()) {
        std::string all;
        for (const auto& d : loaded.errors) {
            all += d.to_string() + "\n";
        }
        throw std::runtime_error("test configuration is invalid:\n" + all);
    }
    return std::move(*loaded.value);
}

proxy::reload_result proxy_harness::reload(const std::string& yaml)
{
    return server_->reload(prepare(yaml));
}

proxy_harness::proxy_harness(const std::string& yaml)
{
    server_ = std::make_unique<proxy::server>(prepare(yaml));
    const auto bound = server_->bind();
    if (bound.error) {
        throw std::runtime_error(bound.message);
    }
    port_ = server_->endpoints().front().port();
    thread_ = std::thread([this] {
        server_->run();
        stopped_ = true;
    });
}

proxy_harness::~proxy_harness()
{
    stop();
    if (thread_.joinable()) {
        thread_.join();
    }
}

std::vector<unsigned short> proxy_harness::ports() const
{
    std::vector<unsigned short> out;
    for (const auto& ep : server_->endpoints()) {
        out.push_back(ep.port());
    }
    return out;
}

void proxy_harness::stop() { server_->stop(); }

bool proxy_harness::wait_stopped(std::chrono::milliseconds limit)
{
    return wait_until([this] { return stopped_.load(); }, limit);
}

} // namespace portico::test
