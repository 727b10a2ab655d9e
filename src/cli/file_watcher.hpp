#pragma once

// Notices when files change on disk, however an editor saves them: written in place, or a new
// file renamed over the old one (vim, VS Code, JetBrains), or a symlink retargeted. Watches
// the directories that hold the files (a watch on the file itself would follow the old inode
// after a rename) and the directory of each symlink's target.

#include "portico/core/net.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace portico::cli {

class file_watcher {
public:
    /**
     * Calls `on_change` on `ex` once a burst of changes to the watched files has been quiet
     * for `debounce`. Throws `std::system_error` when inotify is unavailable.
     */
    file_watcher(executor ex, std::function<void()> on_change,
                 std::chrono::milliseconds debounce = std::chrono::milliseconds(100));
    ~file_watcher();
    file_watcher(const file_watcher&) = delete;
    file_watcher& operator=(const file_watcher&) = delete;

    /// Replaces the set of watched files (paths as configured; symlinks are followed).
    void watch(const std::vector<std::filesystem::path>& files);

    /// Starts reading events.
    void start();

    /// Stops reading events and cancels a pending notification.
    void stop();

private:
    /// Watches the directories of `files_` (following symlinks); whether every one is.
    bool add_watches(bool report);
    /// True when a buffer of inotify events names a watched file (or events were lost).
    /// Notes a watched directory that went away (`complete_` false).
    bool names_a_watched_file(std::string_view events);
    task<void> read_loop();
    task<void> notify_after_quiet();
    /// Notes a change: `on_change` follows once changes have been quiet for `debounce`.
    void changed();
    /// Starts `watch_again` unless every directory is watched or it runs already.
    void look_for_missing_directories();
    /// Adds the watches again once every directory is there, then notifies.
    task<void> watch_again();

    boost::asio::posix::basic_stream_descriptor<executor> inotify_;
    std::function<void()> on_change_;
    std::chrono::milliseconds debounce_;
    steady_timer quiet_;
    steady_timer retry_;
    bool pending_ = false;
    bool stopped_ = false;
    bool complete_ = false;   ///< every directory of `files_` is watched
    bool recovering_ = false; ///< `watch_again` runs
    std::vector<std::filesystem::path> files_;
    std::map<int, std::filesystem::path> directories_; ///< watch descriptor -> directory
    std::set<std::filesystem::path> names_;            ///< watched files, as directory/name
};

} // namespace portico::cli
