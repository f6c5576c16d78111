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
#include <string>
#include <string_view>

namespace megaphone {

class session;

class application {
public:
    virtual ~application() = default;
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
    /// channel's next position (cluster/bus.hpp); `done` (optional, on some server thread) gets
    /// the position, or !ok when the bus could not take the message (nobody got it).
    virtual void publish(std::string_view channel, packet p,
                         std::function<void(const publish_result&)> done = {}) = 0;
    /// Pushes to every session.
    virtual void broadcast(packet p) = 0;
    virtual void subscribe(std::string_view sid, std::string_view channel) = 0;
    virtual void unsubscribe(std::string_view sid, std::string_view channel) = 0;
    /// Ends a session (its held requests are answered with terminate).
    virtual void close(std::string_view sid) = 0;

    /// JSON conveniences: the value is serialized once, however many sessions get it.
    void push(std::string_view sid, const nlohmann::json& value);
    void publish(std::string_view channel, const nlohmann::json& value,
                 std::function<void(const publish_result&)> done = {});
    void broadcast(const nlohmann::json& value);
};

} // namespace megaphone
