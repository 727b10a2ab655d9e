#include "cli/file_watcher.hpp"

#include "portico/core/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace portico::cli {
namespace {

namespace fs = std::filesystem;

// Events that end a save: a write closed, a file renamed or linked into place; and a
// watched directory moved away (one deleted ends its watch with IN_IGNORED unasked).
constexpr std::uint32_t save_events = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MOVE_SELF;

// How often a directory that went away is looked for again.
constexpr auto lost_directory_retry = std::chrono::milliseconds(250);

int open_inotify()
{
    const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        throw std::system_error(errno, std::generic_category(), "inotify_init1");
    }
    return fd;
}

/// `file` as an absolute, lexically normal path (without resolving symlinks).
fs::path absolute_normal(const fs::path& file)
{
    std::error_code ec;
    auto p = fs::absolute(file, ec);
    return (ec ? file : p).lexically_normal();
}

} // namespace

file_watcher::file_watcher(executor ex, std::function<void()> on_change,
                           std::chrono::milliseconds debounce)
    : inotify_(ex, open_inotify()), on_change_(std::move(on_change)), debounce_(debounce),
      quiet_(ex), retry_(ex)
{
}

file_watcher::~file_watcher() = default;

void file_watcher::watch(const std::vector<fs::path>& files)
{
    files_ = files;
    complete_ = add_watches(true);
    look_for_missing_directories();
}

bool file_watcher::add_watches(bool report)
{
    std::set<fs::path> names;
    std::set<fs::path> dirs;
    for (const auto& file : files_) {
        auto path = absolute_normal(file);
        // Follow a chain of symlinks, watching each link and the final file.
        for (int depth = 0; depth < 8; ++depth) {
            names.insert(path);
            dirs.insert(path.parent_path());
            // A symlinked directory on the way is watched as a name in its own parent:
            // replacing it (Kubernetes swaps `..data` so in a ConfigMap volume) changes
            // the file without an event in the file's own directory.
            for (auto dir = path.parent_path(); dir.has_relative_path(); dir = dir.parent_path()) {
                std::error_code link_ec;
                if (fs::is_symlink(dir, link_ec)) {
                    names.insert(dir);
                    dirs.insert(dir.parent_path());
                }
            }
            std::error_code ec;
            if (!fs::is_symlink(path, ec)) {
                break;
            }
            auto target = fs::read_symlink(path, ec);
            if (ec) {
                break;
            }
            path = absolute_normal(target.is_absolute() ? target : path.parent_path() / target);
        }
    }

    // Directories watched before keep their watch (adding one again returns the same
    // descriptor): removing and re-adding it would open a window in which a save is missed.
    std::map<int, fs::path> next;
    bool all = true;
    for (const auto& dir : dirs) {
        const int wd = ::inotify_add_watch(inotify_.native_handle(), dir.c_str(), save_events);
        if (wd < 0) {
            all = false;
            if (report) {
                PORTICO_LOG(log::level::warn, "watch_failed", {"directory", dir.string()},
                            {"error", std::generic_category().message(errno)});
            }
            continue;
        }
        next[wd] = dir;
    }
    for (const auto& [wd, dir] : directories_) {
        if (!next.contains(wd)) {
            ::inotify_rm_watch(inotify_.native_handle(), wd);
        }
    }
    directories_ = std::move(next);
    names_ = std::move(names);
    return all;
}

void file_watcher::start()
{
    net::co_spawn(inotify_.get_executor(), read_loop(), net::detached);
}

void file_watcher::stop()
{
    stopped_ = true;
    boost::system::error_code ec;
    inotify_.cancel(ec);
    quiet_.cancel();
    retry_.cancel();
}

bool file_watcher::names_a_watched_file(std::string_view events)
{
    bool relevant = false;
    for (std::size_t offset = 0; offset + sizeof(inotify_event) <= events.size();) {
        // Copied out: the read buffer (in a coroutine frame) is not promised inotify_event's
        // alignment.
        inotify_event event{};
        std::memcpy(&event, events.data() + offset, sizeof(event));
        const auto name = events.substr(std::min(events.size(), offset + sizeof(event)),
                                        event.len);
        offset += sizeof(event) + event.len;
        if ((event.mask & IN_Q_OVERFLOW) != 0) {
            relevant = true; // events were lost: reload to be sure
            continue;
        }
        const auto dir = directories_.find(event.wd);
        if (dir == directories_.end()) {
            continue;
        }
        if ((event.mask & (IN_IGNORED | IN_MOVE_SELF)) != 0) {
            // The directory was deleted or moved away (a branch switch, `rm -rf config`):
            // its watch sees nothing more, and the one made when it is back must be new.
            if ((event.mask & IN_MOVE_SELF) != 0) {
                ::inotify_rm_watch(inotify_.native_handle(), event.wd);
            }
            directories_.erase(dir);
            complete_ = false;
            continue;
        }
        if (name.empty()) {
            continue;
        }
        // The name is NUL-padded to `len` bytes.
        if (names_.contains(dir->second / std::string(name.substr(0, name.find('\0'))))) {
            relevant = true;
        }
    }
    return relevant;
}

task<void> file_watcher::read_loop()
{
    std::array<char, 16 * 1024> buffer{};
    while (!stopped_) {
        auto [ec, n] = co_await inotify_.async_read_some(net::buffer(buffer));
        if (ec) {
            if (ec != net::error::operation_aborted) {
                PORTICO_LOG(log::level::warn, "watch_failed", {"error", ec.message()});
            }
            co_return;
        }
        if (names_a_watched_file(std::string_view(buffer.data(), n))) {
            changed();
        }
        look_for_missing_directories();
    }
}

void file_watcher::changed()
{
    // Each change restarts the quiet period, so a burst (truncate, write, close; or write
    // temp, rename) produces one notification.
    quiet_.expires_after(debounce_);
    if (!pending_) {
        pending_ = true;
        net::co_spawn(inotify_.get_executor(), notify_after_quiet(), net::detached);
    }
}

void file_watcher::look_for_missing_directories()
{
    if (!complete_ && !recovering_ && !stopped_) {
        recovering_ = true;
        net::co_spawn(inotify_.get_executor(), watch_again(), net::detached);
    }
}

task<void> file_watcher::watch_again()
{
    // inotify cannot watch for a path to appear, only a directory that exists; one that is
    // missing (it went away, or was not there yet) is looked for until it is there, and its
    // file, perhaps saved meanwhile, is then read as a change.
    while (!stopped_ && !complete_) { // a reload meanwhile may have watched everything again
        retry_.expires_after(lost_directory_retry);
        co_await retry_.async_wait();
        if (stopped_ || complete_) {
            break;
        }
        complete_ = add_watches(false);
        if (complete_) {
            // One not there yet is seen through the new watch when it comes.
            const bool saved = std::all_of(files_.begin(), files_.end(), [](const fs::path& f) {
                std::error_code ec;
                return fs::exists(f, ec);
            });
            if (saved) {
                changed();
            }
        }
    }
    recovering_ = false;
}

task<void> file_watcher::notify_after_quiet()
{
    for (;;) {
        auto [ec] = co_await quiet_.async_wait();
        if (stopped_) {
            co_return;
        }
        if (!ec) {
            break;
        }
        // Cancelled by a re-arm (expires_after cancels the pending wait): wait again.
    }
    pending_ = false;
    on_change_();
}

} // namespace portico::cli
