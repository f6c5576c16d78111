// The events that drive a session's machine. Each is a fact about the outside world, named as one.
//
// A request is identified by its request id: for the HTTP transports this is the client's `rid`,
// so "oldest held request" means "lowest rid", and responses leave in rid order.
#pragma once

#include "fsm/packet.hpp"

#include <cstdint>
#include <string_view>

namespace megaphone {

using request_id = std::uint64_t;

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
/// pause): such a request is never held.
struct request_arrived {
    request_id id;
    bool answer_now = false;
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

/// The client closed the connection that carried held request `id`.
struct connection_closed {
    request_id id;
    static constexpr std::string_view name = "connection_closed";
};

/// The session is ended, by the client or by the server.
struct terminate_session {
    close_reason reason;
    static constexpr std::string_view name = "terminate_session";
};

} // namespace megaphone
