#include "support/process.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

extern char** environ;

namespace portico::cli {

std::ostream& operator<<(std::ostream& os, const subprocess_result& r)
{
    os << "exit=" << (r.exit_code ? std::to_string(*r.exit_code) : "none") << " signal=" << r.signal
       << (r.timed_out ? " (timed out)" : "");
    if (!r.error.empty()) {
        os << " error=" << r.error;
    }
    return os << "\n--- stdout\n" << r.out << "--- stderr\n" << r.err;
}

} // namespace portico::cli

namespace portico::test {

namespace fs = std::filesystem;

std::vector<std::string> child_environment(const env_overrides& overrides)
{
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string_view entry(*e);
        const auto name = std::string(entry.substr(0, entry.find('=')));
        if (overrides.find(name) == overrides.end()) {
            env.emplace_back(entry);
        }
    }
    for (const auto& [name, value] : overrides) {
        if (value) {
            env.push_back(name + "=" + *value);
        }
    }
    return env;
}

process_result run_process(const std::vector<std::string>& argv, const fs::path& cwd,
                           const std::vector<std::string>& env, std::chrono::milliseconds deadline)
{
    cli::subprocess_options options;
    options.timeout = deadline;
    options.environment = env;
    options.working_directory = cwd;
    return cli::run_subprocess(argv, options);
}

process_result run_process(const std::vector<std::string>& argv, std::chrono::milliseconds deadline)
{
    return run_process(argv, fs::current_path(), child_environment({}), deadline);
}

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    return lines;
}

bool contains(std::string_view haystack, std::string_view needle)
{
    return haystack.find(needle) != std::string_view::npos;
}

void binary_test::SetUp()
{
    auto pattern = (fs::temp_directory_path() / "portico-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
}

void binary_test::TearDown()
{
    std::error_code ec;
    fs::remove_all(dir_, ec);
}

std::string binary_test::read_file(const fs::path& path) const
{
    std::ifstream in(path.is_absolute() ? path : dir_ / path, std::ios::binary);
    std::ostringstream content;
    content << in.rdbuf();
    return content.str();
}

fs::path binary_test::write_file(const fs::path& relative, std::string_view content)
{
    const auto path = dir_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
    return path;
}

process_result binary_test::portico(const std::vector<std::string>& args, env_overrides env,
                                    std::chrono::milliseconds deadline)
{
    env.try_emplace("PORTICO_CONFIG", std::nullopt);
    env.try_emplace("HOME", dir_.string());
    env.try_emplace("XDG_DATA_HOME", (dir_ / "data").string());
    std::vector<std::string> argv = launcher_;
    argv.push_back(binary());
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, dir_, child_environment(env), deadline);
}

} // namespace portico::test
