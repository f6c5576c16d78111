// An in-process megaphone::server for integration tests: port 0, two I/O threads, short
// timeouts, and at "/comet" a recording application that forwards to the hub (so clients can
// subscribe and publish, and POST /publish/{ch} works) and records what the server told it.
//
// Tests wait for the server through the recording (a condition variable with a deadline), never
// by sleeping and hoping.
#pragma once

#include "app/hub.hpp"
#include "app/server.hpp"
#include "app/session.hpp"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace megaphone::test {

/// What the application saw, in the order it saw it.
struct recording {
    struct message_seen {
        std::string sid;
        std::string text; // the message serialized
    };
    struct close_seen {
        std::string sid;
        close_reason why;
    };
    std::vector<std::string> opened;
    std::vector<message_seen> messages;
    std::vector<close_seen> closed;

    std::optional<close_reason> close_reason_of(std::string_view sid) const {
        for (const auto& c : closed)
            if (c.sid == sid)
                return c.why;
        return std::nullopt;
    }
    std::vector<std::string> messages_of(std::string_view sid) const {
        std::vector<std::string> out;
        for (const auto& m : messages)
            if (m.sid == sid)
                out.push_back(m.text);
        return out;
    }
};

/// The hub, with every callback recorded under a mutex.
class recording_app final : public application {
public:
    explicit recording_app(server& srv)
        : hub_{srv} {}

    void on_open(session& s) override {
        hub_.on_open(s);
        update([&](recording& r) { r.opened.emplace_back(s.id()); });
    }
    void on_message(session& s, const message& m) override {
        hub_.on_message(s, m);
        update([&](recording& r) { r.messages.push_back({std::string(s.id()), m.text()}); });
    }
    void on_close(session& s, close_reason why) override {
        hub_.on_close(s, why);
        update([&](recording& r) { r.closed.push_back({std::string(s.id()), why}); });
    }

    /// Waits until `pred(const recording&)` holds (checked under the lock) or `timeout` passes;
    /// returns whether it holds.
    template <class Pred>
    bool wait_for(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        std::unique_lock lock{mutex_};
        return changed_.wait_until(lock, std::chrono::steady_clock::now() + timeout,
                                   [&] { return pred(static_cast<const recording&>(rec_)); });
    }

    /// Waits until session `sid` has closed; its reason, or nullopt on timeout.
    std::optional<close_reason>
    wait_closed(const std::string& sid,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        std::optional<close_reason> why;
        wait_for(
            [&](const recording& r) {
                why = r.close_reason_of(sid);
                return why.has_value();
            },
            timeout);
        return why;
    }

    /// Waits until session `sid` has received `count` messages from its client.
    bool wait_messages(const std::string& sid, std::size_t count,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        return wait_for([&](const recording& r) { return r.messages_of(sid).size() >= count; },
                        timeout);
    }

    /// A copy of the recording.
    recording snapshot() const {
        std::lock_guard lock{mutex_};
        return rec_;
    }

private:
    template <class F>
    void update(F&& f) {
        {
            std::lock_guard lock{mutex_};
            f(rec_);
        }
        changed_.notify_all();
    }

    hub hub_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    recording rec_;
};

/// Options for a test server: loopback, a free port, two threads with connections spread over
/// both (every path crosses threads), short timeouts. Tests change what they exercise.
inline server_options test_options() {
    using namespace std::chrono_literals;
    server_options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    o.placement.policy = placement_policy::spread;
    o.drain = 20ms;
    o.http.read_timeout = 10s;
    o.http.write_timeout = 10s;
    o.engine.max_wait = 5s;
    o.engine.inactivity = 3s;
    o.engine.max_hold = 1;
    o.log.level = log_level::warn; // quiet: tests read what they check, not the log
    return o;
}

/// A started server with a recording hub at "/comet"; stopped (and joined) on destruction.
class test_server {
public:
    explicit test_server(server_options options = test_options())
        : srv_{std::move(options)}
        , app_{srv_} {
        srv_.mount("/comet", app_);
        srv_.start();
    }
    ~test_server() {
        // Before the application goes: the shutdown calls its on_close.
        srv_.stop();
        srv_.wait();
    }
    test_server(const test_server&) = delete;
    test_server& operator=(const test_server&) = delete;

    server& srv() noexcept { return srv_; }
    recording_app& app() noexcept { return app_; }
    unsigned short port() const noexcept { return srv_.port(); }
    /// The internal door (POST /publish without a key, GET /metrics): app/access.hpp.
    unsigned short internal_port() const noexcept { return srv_.internal_port(); }
    const server_options& options() const noexcept { return srv_.options(); }

private:
    server srv_;
    recording_app app_;
};

} // namespace megaphone::test
