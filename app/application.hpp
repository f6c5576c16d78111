// The application API: what a push app written on Megaphone implements and calls.
//
// An application is a set of handlers. They run on the thread that owns the session (its
// shard), never two at once for one session. From a handler, talk to the session you were given
// (push, subscribe, close); to reach other sessions, channels or everyone, use the broker
// (`s.broker()`), which is also what other threads use.
#pragma once

#include "cluster/bus.hpp"
#include "fsm/events.hpp"
#include "fsm/packet.hpp"
#include "transport/protocol.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace megaphone {

namespace auth {
struct token_claims;
} // namespace auth

class session;

/// What an application learns of a client asking for a new session (application::authorize).
/// Valid during the call only.
struct connect_info {
    /// The address the request came from (behind a reverse proxy: the proxy's; the proxy's
    /// X-Forwarded-For is among the headers, worth only what the proxy makes it worth).
    const peer_address& peer;
    /// content_kind::json (JSON transport) or content_kind::xml (BOSH).
    content_kind transport;
    /// The creation request's header fields, in order, names as the client spelled them
    /// (Cookie and Authorization included: an app may authenticate by either).
    std::span<const std::pair<std::string, std::string>> headers;
    /// The claims of the client's valid token; null when it gave none (a refused token never
    /// gets this far).
    const auth::token_claims* claims;

    /// The first header field named `name` (case-insensitive); empty when absent.
    std::string_view header(std::string_view name) const noexcept;
};

/// An application's answer to connect_info: let the client in or not, and who it is.
struct authorization {
    bool allowed = true;
    /// Not empty: the session's user (session::user()), in place of the token's `sub`. A later
    /// token refresh must then carry this same `sub`.
    std::string user;

    static authorization allow() { return {}; }
    static authorization allow_as(std::string user) { return {true, std::move(user)}; }
    /// The client is answered not-authorized (JSON 401, BOSH terminate), counted as
    /// refusal::unauthorized; no session is made.
    static authorization deny() { return {false, {}}; }
};

class application {
public:
    virtual ~application() = default;
    /// A client asks for a session: before it is made, after its token (if any) was checked
    /// and found valid. Runs on the thread that will own the session; it must not block (a
    /// remote decision belongs in the backend that mints the tokens, or in --auth-url for
    /// channels). The default lets everyone in with the token's user, if any.
    virtual authorization authorize(const connect_info&) { return authorization::allow(); }
    /// A session was created; what it pushes now goes out with the creation answer.
    virtual void on_open(session&) {}
    /// A client message, in the order the client sent it.
    virtual void on_message(session&, const message&) {}
    /// The session has ended (terminate, inactivity, error, shutdown). Pushing to it is a no-op.
    virtual void on_close(session&, close_reason) {}
    /// BOSH only (XEP-0206): the client restarted its XML stream (`xmpp:restart='true'`, after
    /// SASL success). Called before that request's payloads, which it normally has none of;
    /// what the app pushes now (new stream features) answers the restart request.
    virtual void on_stream_restart(session&) {}
    /// A JSON creation's `recover` asks for `channel` from the cursor `since` (docs/PROTOCOL.md,
    /// "Recovery"), before the creation's messages. The default subscribes: s.subscribe(channel,
    /// since). An app that must check who may read the channel overrides it.
    virtual void on_recover(session& s, std::string_view channel, const stream_position& since);
    /// A subscription from a cursor has found the channel's history: `r.messages` (every
    /// message after the cursor when r.recovered) are pushed right after this call, then live
    /// messages follow. The default pushes, to JSON sessions,
    /// {"channel": C, "recovered": true|false, "epoch": E, "offset": K}.
    virtual void on_recovered(session& s, std::string_view channel, const recovery& r);
    /// May the session subscribe to / publish on `channel`? Asked by the hub (and by the
    /// default on_recover) before it acts; an app that decides from its own database overrides
    /// them. The defaults follow the session's token (app/access.hpp): its `channels` and
    /// `publish` patterns, or without a token any channel outside the private prefix and
    /// --client-publish.
    virtual bool may_subscribe(session& s, std::string_view channel);
    virtual bool may_publish(session& s, std::string_view channel);
};

/// Thread-safe entry points to all sessions of a server (or of a test harness). Every call may
/// be made from any thread; each call reaches its sessions asynchronously, in call order per
/// session.
class broker {
public:
    virtual ~broker() = default;
    /// Pushes to one session; a no-op if it does not exist or has closed.
    virtual void push(std::string_view sid, packet p) = 0;
    /// Pushes to every session subscribed to `channel`, on every node, stamped with the
    /// channel's next position (cluster/bus.hpp); `done` (optional, on some server thread,
    /// always after this call returns) gets the position, or !ok when the bus could not take
    /// the message (nobody got it).
    virtual void publish(std::string_view channel, packet p,
                         std::function<void(const publish_result&)> done = {}) = 0;
    /// Pushes to every session.
    virtual void broadcast(packet p) = 0;
    virtual void subscribe(std::string_view sid, std::string_view channel) = 0;
    virtual void unsubscribe(std::string_view sid, std::string_view channel) = 0;
    /// Ends a session (its held requests are answered with terminate).
    virtual void close(std::string_view sid) = 0;
    /// Runs `f` with the session on its thread, always later (queued, never inside this call:
    /// calls made in order from one thread run in that order, after the caller's current
    /// handler); nothing if the session does not exist or has closed by then. For decisions
    /// an application takes elsewhere (another thread, a remote service) and then applies.
    virtual void with_session(std::string_view sid, std::function<void(session&)> f) = 0;

    /// JSON conveniences: the value is serialized once, however many sessions get it.
    void push(std::string_view sid, const nlohmann::json& value);
    void publish(std::string_view channel, const nlohmann::json& value,
                 std::function<void(const publish_result&)> done = {});
    void broadcast(const nlohmann::json& value);
};

} // namespace megaphone
