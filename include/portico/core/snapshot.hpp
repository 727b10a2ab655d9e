#pragma once

#include <atomic>
#include <memory>
#include <utility>

namespace portico {

/**
 * An immutable value that is replaced as a whole (route table, certificate set).
 *
 * Readers take a `std::shared_ptr<const T>` once per unit of work and keep it for as long
 * as that work needs it, so a replacement never changes what an in-flight exchange sees.
 * `generation()` lets a reader that caches the pointer notice a replacement without
 * touching the shared reference count.
 */
template <typename T>
class snapshot {
public:
    /// Holds `initial`.
    explicit snapshot(std::shared_ptr<const T> initial) : value_(std::move(initial)) {}

    /// The current value.
    std::shared_ptr<const T> load() const noexcept { return value_.load(std::memory_order_acquire); }

    /// Replaces the value; readers holding the old one keep it alive.
    void store(std::shared_ptr<const T> next) noexcept
    {
        value_.store(std::move(next), std::memory_order_release);
        generation_.fetch_add(1, std::memory_order_release);
    }

    /// Increases with every `store`.
    unsigned long generation() const noexcept { return generation_.load(std::memory_order_acquire); }

private:
    std::atomic<std::shared_ptr<const T>> value_;
    std::atomic<unsigned long> generation_{0};
};

} // namespace portico
