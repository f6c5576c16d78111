// What a streaming transport (Server-Sent Events now; a WebSocket later) gives the session
// layer: how to recognise and read the request that opens a stream, and how to frame what the
// session writes on it. Knows nothing of sessions: the session's streaming sink
// (app/stream_sink.hpp) keeps the positions and the replay window, the connection
// (transport/http_connection.hpp) writes the pieces, one at a time, and the heartbeats.
//
// Positions: every packet a session writes on a stream gets the next id of the session's
// outgoing stream (1, 2, 3, ...). The client gives back the id of the last packet it received
// when it reconnects (SSE: Last-Event-ID); the session then replays exactly what followed.
#pragma once

#include "fsm/events.hpp"
#include "fsm/packet.hpp"
#include "transport/exchange.hpp"
#include "transport/net.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace megaphone {

struct incoming;

/// A request that opens a stream, read by its transport.
struct stream_request {
    std::string sid;
    /// The id of the last packet the client has (it acknowledges every packet up to it);
    /// nullopt: none (a first connect: everything the session's stream kept is replayed).
    std::optional<std::uint64_t> last_id;
    /// The rid of the client's latest request when it opened the stream (the fence:
    /// app/stream_sink.hpp); nullopt: none given.
    std::optional<std::uint64_t> rid;
};

class stream_transport {
public:
    virtual ~stream_transport() = default;
    /// Its name in logs and metrics ("sse").
    virtual std::string_view name() const noexcept = 0;
    /// Whether `request` opens one of this transport's streams; `rest` is its path after the
    /// mount's (and after a "/<node id>" that follows it).
    virtual bool accepts(const http::request<http::string_body>& request,
                         std::string_view rest) const = 0;
    /// The session and the client's position; nullopt when the request is malformed.
    virtual std::optional<stream_request>
    parse(const http::request<http::string_body>& request) const = 0;
    /// The stream's connection, asked for every request accepts() took before anything is
    /// answered, on the thread the stream will live on (after a move to its session's
    /// thread). By default the request's own: the answer is the stream (SSE). A
    /// transport with a protocol of its own (WebSocket) checks the request here and either
    /// answers it through `in.ex` (false: nothing more to do) or takes the connection over
    /// (incoming::taker) and makes `in.ex` its own exchange, which then carries refusal(),
    /// opening() and the rest like an SSE answer.
    virtual bool connect(incoming& in) const {
        (void)in;
        return true;
    }
    /// The answer when no stream can open: an unknown or ended session, a malformed request
    /// (SSE: 204, which makes an EventSource stop reconnecting).
    virtual response refusal() const = 0;
    /// The stream's head and its first bytes (flushed at once, with a sign that the stream is
    /// flowing: SSE's `ready` event): `packets`, numbered from `first_id` on (a replay and what
    /// was queued; possibly none).
    virtual response opening(std::uint64_t first_id, std::span<const packet> packets) const = 0;
    /// `packets`, numbered from `first_id` on.
    virtual packet events(std::uint64_t first_id, std::span<const packet> packets) const = 0;
    /// The last piece of a stream whose session ended (`why`).
    virtual packet closing(close_reason why) const = 0;
};

} // namespace megaphone
