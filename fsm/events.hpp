// The events that drive a session's machine. Each is a fact about the outside world, named as one.
//
// A request is identified by its request id: for the HTTP transports this is the client's `rid`,
// so "oldest held request" means "lowest rid", and responses leave in rid order.
#pragma once

#include "fsm/packet.hpp"

#include <cstdint>
#include <string_view>
#include <vector>

namespace megaphone {

using request_id = std::uint64_t;

/// The id that names a session's streaming sink (an SSE response now, a WebSocket later) in
/// events and effects, where a held long-poll is named by its rid: above every rid (rids are
/// at most 2^53 - 1). A session has at most one streaming sink attached.
inline constexpr request_id stream_sink_id = ~request_id{0};

/// Why a session ended. Transports map this to a protocol condition (see transport/error.hpp).
enum class close_reason : std::uint8_t {
    client_terminate, ///< the client asked to end the session
    server_terminate, ///< the application ended it
    inactivity,       ///< no request for `inactivity` seconds (the die timer fired)
    queue_overflow,   ///< more packets queued than the session may keep
    item_not_found,   ///< protocol: rid outside the window, bad key
    policy_violation, ///< protocol: too many requests, polling too fast
    bad_request,      ///< protocol: malformed request inside a session
    system_shutdown,  ///< the server is stopping
    internal_error,   ///< the application failed (threw) while handling the session
    host_unknown,     ///< the application does not serve the host the client asked for
    not_authorized,   ///< its token expired (not refreshed in time)
};
std::string_view to_string(close_reason) noexcept;

/// A client request arrives. `answer_now` asks for an immediate answer (session creation, a
/// pause): such a request is never held. `expects_stream`: the client has a stream, or is opening
/// one (JSON `"streaming": true`, or a request sent before the attached stream opened): it is
/// answered at once and empty, and what is queued stays for the stream.
struct request_arrived {
    request_id id;
    bool answer_now = false;
    bool expects_stream = false;
    static constexpr std::string_view name = "request_arrived";
};

/// The server side pushes one packet to the session.
struct packet_pushed {
    packet data;
    static constexpr std::string_view name = "packet_pushed";
};

/// The wait timer of held request `id` fired.
struct wait_expired {
    request_id id;
    static constexpr std::string_view name = "wait_expired";
};

/// The die timer fired: no request was held for `inactivity` seconds.
struct die_expired {
    static constexpr std::string_view name = "die_expired";
};

/// The client closed the connection that carried held request `id` (`stream_sink_id`: the
/// streaming sink's connection).
struct connection_closed {
    request_id id;
    static constexpr std::string_view name = "connection_closed";
};

/// A streaming sink was attached to the session (the session ended any earlier one first). It
/// is written to many times, answered by `respond(stream_sink_id, ...)`, one write at a time.
struct stream_opened {
    static constexpr std::string_view name = "stream_opened";
};

/// The streaming sink has written everything it was given: it may take the next batch.
struct stream_written {
    static constexpr std::string_view name = "stream_written";
};

/// The client's stream is gone (its long-poll says so with `stream_ack`): `packets`, what was
/// written on a stream after the position the client acknowledged and never reached it, go back
/// to the front of the queue, in order, before anything queued since. A stream still attached has
/// been let go by the session (its sink ended it) and is forgotten.
struct stream_rewound {
    std::vector<packet> packets;
    static constexpr std::string_view name = "stream_rewound";
};

/// The session is ended, by the client or by the server.
struct terminate_session {
    close_reason reason;
    static constexpr std::string_view name = "terminate_session";
};

} // namespace megaphone
