#include "cli/config_source.hpp"

#include "portico/core/log.hpp"
#include "portico/tls/certificates.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <utility>
#include <vector>

namespace portico::cli {
namespace {

/// How a diagnostic is reported: text for a person, or a JSON log line under `run`.
bool is_json_reporting() { return log::current_format() == log::format::json; }

void report(log::level lv, std::string_view event, const config::diagnostic& d)
{
    if (!log::enabled(lv)) {
        return;
    }
    if (is_json_reporting()) {
        log::write(lv, event,
                   {{"file", d.where.file},
                    {"line", d.where.line},
                    {"column", d.where.column},
                    {"message", d.message}});
        return;
    }
    // `file:line:col: message` as compilers print it, so editors and terminals link to it.
    fmt::print(stderr, "{}{}\n", lv == log::level::warn ? "warning: " : "", d.to_string());
}

void report_failure(const std::string& name, std::size_t errors)
{
    if (is_json_reporting()) {
        log::write(log::level::error, "config_invalid", {{"file", name}, {"errors", errors}});
        return;
    }
    fmt::print(stderr, "portico: {} {} in {}\n", errors, errors == 1 ? "error" : "errors", name);
}

/**
 * A parsed file's checks that need more than the file: the user certificates it names
 * must load as serving would load them. Adds what they find to `result`.
 */
void check_beyond_the_file(config::load_result& result)
{
    if (!result.ok() || !result.value) {
        return;
    }
    auto found = tls::check_user_certificates(result.value->tls);
    for (auto& w : found.warnings) {
        result.warnings.push_back(std::move(w));
    }
    for (auto& e : found.errors) {
        result.errors.push_back(std::move(e));
    }
    if (!result.ok()) {
        result.value.reset(); // as `load_result` promises: a value only without errors
    }
}

} // namespace

std::string loaded_config::display_name() const
{
    if (!where.file) {
        return "built-in default";
    }
    // The lookup's own origins are already the relative names the user knows; a file named
    // by -c or PORTICO_CONFIG is shown as the user wrote it.
    if (where.origin.starts_with("./")) {
        return where.origin;
    }
    return where.file->string();
}

std::optional<loaded_config> load_config(const std::optional<std::filesystem::path>& cli_file)
{
    const auto env = config::environment::process();
    loaded_config loaded;
    // An empty cwd keeps looked-up names relative, so messages read `portico.yaml:14:9`.
    loaded.where = config::locate(cli_file, env, {});
    if (!loaded.where.file) {
        loaded.value = config::default_config(env);
        return loaded;
    }

    auto result = config::load_file(*loaded.where.file, env);
    check_beyond_the_file(result);
    for (const auto& w : result.warnings) {
        report(log::level::warn, "config_warning", w);
    }
    if (!result.ok() || !result.value) {
        for (const auto& e : result.errors) {
            report(log::level::error, "config_error", e);
        }
        report_failure(loaded.display_name(), result.errors.size());
        return std::nullopt;
    }
    loaded.value = std::move(*result.value);
    return loaded;
}

std::optional<config::config> load_again(const loaded_config& previous, std::string& errors)
{
    auto result = config::load_file(*previous.where.file, config::environment::process());
    check_beyond_the_file(result);
    for (const auto& w : result.warnings) {
        report(log::level::warn, "config_warning", w);
    }
    if (!result.ok() || !result.value) {
        errors.clear();
        for (const auto& e : result.errors) {
            report(log::level::error, "config_error", e);
            errors += e.to_string();
            errors += '\n';
        }
        report_failure(previous.display_name(), result.errors.size());
        return std::nullopt;
    }
    return std::move(result.value);
}

} // namespace portico::cli
