#include "core/name_resolver.hpp"

#include <algorithm>
#include <thread>

namespace portico {

/// What the owner and the resolving threads share, guarded by `mutex`.
struct name_resolver::shared_state {
    explicit shared_state(deliver_fn d) : deliver(std::move(d)) {}
    std::mutex mutex;
    std::condition_variable wake;
    deliver_fn deliver;
    bool owned = true; ///< false once the owner has let go: nothing is delivered after that
    std::map<name_key, std::vector<std::shared_ptr<answer>>> pending; ///< queued or resolving
    std::deque<name_key> queue;                   ///< names no thread has taken yet
    std::vector<std::shared_ptr<answer>> refused; ///< answers a delivery was refused for
    std::size_t threads = 0;
    std::size_t idle = 0;
};

name_resolver::name_resolver(deliver_fn deliver)
    : shared_(std::make_shared<shared_state>(std::move(deliver)))
{
}

name_resolver::~name_resolver()
{
    // The handlers go here, on the owner's thread, before any thread can see that the owner
    // has let go and drop its share of an answer.
    for (auto* a : waiting_) {
        a->abandon();
    }
    waiting_.clear();
    std::map<name_key, std::vector<std::shared_ptr<answer>>> pending;
    std::vector<std::shared_ptr<answer>> refused;
    {
        std::lock_guard lock(shared_->mutex);
        shared_->owned = false;
        pending.swap(shared_->pending);
        shared_->queue.clear();
        refused.swap(shared_->refused);
    }
    shared_->wake.notify_all();
}

void name_resolver::cancel_all()
{
    const std::vector<answer*> all(waiting_.begin(), waiting_.end());
    for (auto* a : all) {
        a->cancel();
    }
}

void name_resolver::enqueue(name_key name, std::shared_ptr<answer> to)
{
    {
        std::lock_guard lock(shared_->mutex);
        auto [it, fresh] = shared_->pending.try_emplace(name);
        if (fresh) {
            // A thread for each name no idle thread is there to take, up to the limit.
            if (shared_->queue.size() >= shared_->idle && shared_->threads < max_threads) {
                try {
                    std::thread(run, shared_).detach();
                    ++shared_->threads;
                } catch (const std::system_error&) {
                    if (shared_->threads == 0) {
                        shared_->pending.erase(it);
                        throw;
                    }
                    // The threads there are take it in turn.
                }
            }
            shared_->queue.push_back(std::move(name));
        }
        it->second.push_back(std::move(to));
    }
    shared_->wake.notify_one();
}

void name_resolver::run(std::shared_ptr<shared_state> s)
{
    // Asio's resolver, used blocking: its context never runs, so it is made once.
    net::io_context blocking(1);
    tcp::resolver resolver(blocking);
    std::unique_lock lock(s->mutex);
    for (;;) {
        ++s->idle;
        const bool woken = s->wake.wait_for(lock, idle_thread_time,
                                            [&] { return !s->owned || !s->queue.empty(); });
        --s->idle;
        if (!s->owned || !woken) {
            --s->threads;
            return;
        }
        const auto name = std::move(s->queue.front());
        s->queue.pop_front();
        const auto& waiting = s->pending[name];
        const bool wanted = std::any_of(waiting.begin(), waiting.end(),
                                        [](const auto& a) { return !a->settled; });
        boost::system::error_code ec = net::error::operation_aborted;
        std::vector<tcp::endpoint> found;
        if (wanted) {
            // Skipped names keep the lock throughout, so that no request joins a name
            // whose answer is already "aborted".
            lock.unlock();
            for (const auto& entry : resolver.resolve(name.first, name.second, ec)) {
                found.push_back(entry.endpoint());
            }
            lock.lock();
            if (!s->owned) {
                // The owner let go meanwhile, and took what was pending with it.
                --s->threads;
                return;
            }
        }
        auto answers = std::move(s->pending[name]);
        s->pending.erase(name);
        // Delivered under the lock: the owner's thread is there to run it while `owned`.
        // The answers hold the waiting coroutines, so where a delivery is refused they are
        // kept, to go with the owner, not here on this thread.
        const bool taken = s->deliver([answers, ec, found]() {
            for (const auto& a : answers) {
                a->give(ec, found);
            }
        });
        if (!taken) {
            s->refused.insert(s->refused.end(), answers.begin(), answers.end());
        }
    }
}

} // namespace portico
