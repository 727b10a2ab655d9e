#pragma once

// Host names resolved off the event loop, without Asio's asynchronous resolver, whose one
// thread per context is joined when the context goes: a name server that does not answer
// would hold up shutdown for as long as the system's resolver waits (5 s a try and server
// by default). The threads here call Asio's resolver blocking, and are not joined.

#include "portico/core/net.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/bind_handler.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace portico {

/**
 * Resolves names on threads of its own (started on demand, at most `max_threads`, gone
 * after `idle_thread_time` without work) and
 * answers on its owner's thread, through `deliver`. Requests for a name already being
 * resolved share that resolve, and other names go on other threads meanwhile. A resolve is
 * cancellable (per-operation cancellation, as by a deadline: see `resolve_within`); its
 * answer, when it comes, is dropped. The threads are not joined: one stuck in the system's
 * resolver must not hold up shutdown, and what they share with the owner lives as long as
 * the last of them.
 *
 * Everything but the threads runs on the owner's thread, which must outlive this object's
 * destruction only in the obvious way: destroy it on that thread, before the context its
 * handlers run on.
 */
class name_resolver {
public:
    /// Runs a function on the owner's thread, or refuses it (false: a closed mailbox). Called
    /// from the resolving threads.
    using deliver_fn = std::function<bool(std::function<void()>)>;

    explicit name_resolver(deliver_fn deliver);
    /// Drops every resolve still awaited, unanswered (its owner is going).
    ~name_resolver();
    name_resolver(const name_resolver&) = delete;
    name_resolver& operator=(const name_resolver&) = delete;

    /// Resolves `host` and `port`; completes on the handler's executor, or at once with
    /// `operation_aborted` when cancelled.
    template <typename Token>
    auto async_resolve(std::string host, std::string port, Token&& token)
    {
        using signature = void(boost::system::error_code, std::vector<tcp::endpoint>);
        return net::async_initiate<Token, signature>(
            [this](auto handler, std::string name, std::string service) {
                auto to = std::make_shared<answer_to<decltype(handler)>>(std::move(handler),
                                                                         waiting_);
                auto slot = net::get_associated_cancellation_slot(*to->handler);
                if (slot.is_connected()) {
                    slot.assign([a = to.get()](net::cancellation_type type) {
                        if (type != net::cancellation_type::none) {
                            a->cancel();
                        }
                    });
                }
                waiting_.insert(to.get());
                try {
                    enqueue({std::move(name), std::move(service)}, to);
                } catch (const std::system_error& e) {
                    // No thread to resolve on (a thread limit): this resolve fails, not the
                    // owner.
                    to->give(boost::system::error_code(e.code().value(),
                                                       boost::system::system_category()),
                             {});
                }
            },
            token, std::move(host), std::move(port));
    }

    /// Completes every resolve still awaited with `operation_aborted`.
    void cancel_all();

    /// Threads that may wait in the system's resolver at once: names stuck at once
    /// beyond this hold up the others. Requests for one name share a thread, so this is a
    /// bound on distinct names, of which a configuration has few.
    static constexpr std::size_t max_threads = 32;
    /// How long a thread with nothing to resolve stays for the next name.
    static constexpr std::chrono::seconds idle_thread_time{30};

private:
    using name_key = std::pair<std::string, std::string>; ///< host, port

    struct answer {
        virtual ~answer() = default;
        /// Completes the resolve unless it is complete already.
        virtual void give(boost::system::error_code ec, std::vector<tcp::endpoint> found) = 0;
        /// Completes it with `operation_aborted`.
        virtual void cancel() = 0;
        /// Drops the handler unanswered.
        virtual void abandon() = 0;
        /// Set on the owner's thread once nobody waits for this answer; read by the
        /// resolving threads, which skip a name that nobody waits for any more.
        std::atomic<bool> settled{false};
    };

    template <typename Handler>
    struct answer_to final : answer {
        answer_to(Handler h, std::set<answer*>& registry)
            : handler(std::move(h)), waiting(&registry)
        {
        }
        ~answer_to() override
        {
            if (handler) {
                // Destroyed unanswered on the owner's thread (a delivery never run):
                // nothing may cancel it later.
                net::get_associated_cancellation_slot(*handler).clear();
                waiting->erase(this);
            }
        }
        void give(boost::system::error_code ec, std::vector<tcp::endpoint> found) override
        {
            if (handler) {
                complete(ec, std::move(found));
            }
        }
        void cancel() override
        {
            if (handler) {
                complete(net::error::operation_aborted, {});
            }
        }
        void abandon() override
        {
            settled = true;
            if (handler) {
                net::get_associated_cancellation_slot(*handler).clear();
                handler.reset();
            }
        }
        void complete(boost::system::error_code ec, std::vector<tcp::endpoint> found)
        {
            settled = true;
            waiting->erase(this);
            Handler h = std::move(*handler);
            handler.reset();
            net::get_associated_cancellation_slot(h).clear();
            auto ex = net::get_associated_executor(h);
            net::post(ex, beast::bind_front_handler(std::move(h), ec, std::move(found)));
        }
        std::optional<Handler> handler;
        std::set<answer*>* waiting;
    };

    struct shared_state;

    /// Adds `to` to its name's resolve, queueing the name and starting a thread if needed.
    void enqueue(name_key name, std::shared_ptr<answer> to);
    static void run(std::shared_ptr<shared_state> s);

    std::shared_ptr<shared_state> shared_;
    std::set<answer*> waiting_; ///< answers whose handler still waits; the owner's thread only
};

/// Delivery for an owner whose context takes posts from other threads (not a worker's:
/// decision 0013, the worker's mailbox delivers there).
inline name_resolver::deliver_fn deliver_by_post(io_executor ex)
{
    return [ex](std::function<void()> f) {
        net::post(ex, std::move(f));
        return true;
    };
}

/// What `resolve_within` found: the addresses, or why there are none.
struct resolve_outcome {
    boost::system::error_code error;
    std::vector<tcp::endpoint> found;
    bool timed_out = false;
};

/// Resolves `host` and `port`, giving up after `limit`.
inline task<resolve_outcome> resolve_within(name_resolver& resolver, std::string host,
                                            std::string port,
                                            std::chrono::steady_clock::duration limit)
{
    using namespace net::experimental::awaitable_operators;
    steady_timer deadline(co_await net::this_coro::executor);
    deadline.expires_after(limit);
    auto first = co_await (resolver.async_resolve(std::move(host), std::move(port), as_task) ||
                           deadline.async_wait(as_task));
    resolve_outcome outcome;
    if (first.index() == 1) {
        outcome.timed_out = true;
        outcome.error = net::error::timed_out;
        co_return outcome;
    }
    std::tie(outcome.error, outcome.found) = std::move(std::get<0>(first));
    co_return outcome;
}

} // namespace portico
