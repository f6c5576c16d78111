// auth_hook: asks a backend over HTTP whether a session may subscribe to or publish on a
// channel (`--auth-url`), as nchan's nchan_authorize_request and Centrifugo's subscribe and
// publish proxies do, for backends in any language.
//
// For each question it POSTs {"sid": S, "user": U, "channel": C, "action": "subscribe" |
// "publish"} (Content-Type: application/json) to the URL. 200 allows, 403 denies; any other
// status, a connection that fails, or no answer within `timeout` is a failure, which denies too
// (failing closed) and is reported through on_failure. Allows and denies are cached for
// `cache_for`; failures never are, so the next question asks again.
//
// Questions about the same (who, channel, action) that arrive while one is in flight wait for
// its answer instead of asking again, and their answers are given in the order asked, before
// the result enters the cache: a caller that acts on the answers through one FIFO queue per
// session (broker::with_session) keeps that session's actions in order.
//
// Who: the user when the session has one (a token's `sub`, or the application's), else the sid.
// So a backend that decides per user is asked once per user, channel and action per cache
// period; one that decides per sid should know that the sid is only what it asks by when the
// session has no user.
//
// The HTTP client (Boost.Beast) runs on a thread of its own with at most `connections`
// keep-alive connections to the backend; more questions wait for a free one. Plain http only
// (the backend is on loopback or a private network).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace megaphone::auth {

enum class hook_action : std::uint8_t { subscribe, publish };
std::string_view to_string(hook_action) noexcept;

enum class hook_verdict : std::uint8_t {
    allow,  ///< 200
    deny,   ///< 403
    failed, ///< anything else, no answer in time, no connection: denies, not cached
};

struct hook_question {
    std::string sid;
    std::string user; ///< empty: the session has none
    std::string channel;
    hook_action action = hook_action::subscribe;
};

struct hook_options {
    /// http://host[:port]/path; empty: no hook.
    std::string url;
    /// The longest one question may take, connecting included.
    std::chrono::milliseconds timeout{std::chrono::seconds(3)};
    /// How long an allow or deny is remembered; 0: never (every question is asked).
    std::chrono::milliseconds cache_for{std::chrono::seconds(30)};
    /// Most answers remembered; when full, the expired ones go, and if none has, all of them.
    std::size_t cache_entries = 100'000;
    /// Most connections to the backend at once.
    std::size_t connections = 8;
    /// Told why a question failed (the status, the error, "timeout"), on the hook's thread.
    std::function<void(std::string_view why)> on_failure;
};

class auth_hook {
public:
    /// Starts the hook's thread. Throws std::invalid_argument for a URL that is not
    /// http://host[:port]/path.
    explicit auth_hook(hook_options options);
    /// Stops the thread; questions still in flight are never answered.
    ~auth_hook();
    auth_hook(const auth_hook&) = delete;
    auth_hook& operator=(const auth_hook&) = delete;

    using answer = std::function<void(hook_verdict)>;
    /// Any thread. A cached answer calls `done` inside this call; otherwise `done` runs on the
    /// hook's thread once the backend answered (or failed).
    void ask(hook_question question, answer done);

    /// Questions sent to the backend so far (cache hits and coalesced questions not counted).
    std::uint64_t asked() const noexcept;
    const hook_options& options() const noexcept;

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace megaphone::auth
