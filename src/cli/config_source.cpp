#include "cli/config_source.hpp"

#include "portico/core/log.hpp"
#include "portico/tls/certificates.hpp"

#include <fmt/format.h>

#include <fmt/ranges.h>

#include <algorithm>
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
    log::write_line(fmt::format("{}{}", lv == log::level::warn ? "warning: " : "", d.to_string()));
}

void report_failure(const std::string& name, std::size_t errors)
{
    if (is_json_reporting()) {
        log::write(log::level::error, "config_invalid", {{"file", name}, {"errors", errors}});
        return;
    }
    log::write_line(
        fmt::format("portico: {} {} in {}", errors, errors == 1 ? "error" : "errors", name));
}

/**
 * A warning when the CA already in `ca_dir` was made with other names than the file's
 * `tls.ca_permitted_names`: its constraints are fixed, so a routed name outside them gets
 * no certificate, which nothing else would say.
 */
std::optional<config::diagnostic> permitted_names_drift(const config::tls_settings& tls,
                                                        const std::filesystem::path& file)
{
    auto existing = tls::existing_ca_permitted_names(tls.ca_dir);
    if (!existing) {
        return std::nullopt;
    }
    auto wanted = tls.ca_permitted_names;
    for (auto* names : {&*existing, &wanted}) {
        std::sort(names->begin(), names->end());
        names->erase(std::unique(names->begin(), names->end()), names->end());
    }
    if (*existing == wanted) {
        return std::nullopt;
    }
    auto at = tls.permitted_names_at;
    if (at.file.empty()) {
        at = {file.string(), 1, 1}; // left at its default: the file's start, as for errors
    }
    return config::diagnostic{
        at, fmt::format("tls.ca_permitted_names is [{}], but the CA in {} was created for [{}] "
                        "and keeps those names: certificates are issued only under them. To "
                        "use the new names, move that directory aside so that a new CA is made "
                        "(and trust it again with 'portico ca install')",
                        fmt::join(tls.ca_permitted_names, ", "), tls.ca_dir.string(),
                        fmt::join(*existing, ", "))};
}

/**
 * A parsed file's checks that need more than the file: the user certificates it names
 * must load as serving would load them, and an existing CA must have the names the file
 * asks for. Adds what they find to `result`.
 */
void check_beyond_the_file(config::load_result& result, const std::filesystem::path& file)
{
    if (!result.ok() || !result.value) {
        return;
    }
    if (auto foreign = tls::foreign_ca_directory(result.value->tls.ca_dir); !foreign.empty()) {
        result.errors.push_back({result.value->tls.ca_dir_at, std::move(foreign)});
    } else if (auto drift = permitted_names_drift(result.value->tls, file)) {
        result.warnings.push_back(std::move(*drift));
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

std::string display_name(const config::location& where)
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

std::optional<loaded_config> load_config(const std::optional<std::filesystem::path>& cli_file,
                                         bool for_serving)
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
    if (for_serving) {
        check_beyond_the_file(result, *loaded.where.file);
    }
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

std::optional<config::config> load_again(const config::location& where, std::string& errors)
{
    auto result = config::load_file(*where.file, config::environment::process());
    check_beyond_the_file(result, *where.file);
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
        report_failure(display_name(where), result.errors.size());
        return std::nullopt;
    }
    return std::move(result.value);
}

} // namespace portico::cli
