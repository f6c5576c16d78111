// What both HTTP transports (JSON at /comet, BOSH at /bosh) hand to the session layer, and what
// the session layer asks them to encode. Transport-neutral: the session layer never sees bytes.
#pragma once

#include "fsm/events.hpp"
#include "fsm/packet.hpp"
#include "transport/exchange.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace megaphone {

/// A message from a client: a JSON value (JSON transport) or an XML stanza (BOSH).
class message {
public:
    // Parentheses, not braces: nlohmann::json{v} would make a one-element array.
    explicit message(nlohmann::json value)
        : json_(std::move(value)) {}
    static message xml(std::string stanza) {
        message m{nlohmann::json()};
        m.xml_ = std::move(stanza);
        m.is_xml_ = true;
        return m;
    }
    bool is_json() const noexcept { return !is_xml_; }
    const nlohmann::json& json() const noexcept { return json_; }
    /// The message as text: the stanza, or the JSON value serialized.
    std::string text() const { return is_xml_ ? xml_ : json_.dump(); }

private:
    nlohmann::json json_;
    std::string xml_;
    bool is_xml_ = false;
};

struct bosh_request;

/// Where a channel's stream stands: the epoch (an id that changes whenever the channel's history
/// was lost: a restart without Redis, a Redis that lost its data) and the offset of a message in
/// it (1, 2, 3, ... within an epoch). A client's recovery cursor is the position of the last
/// message it received.
struct stream_position {
    std::string epoch;
    std::uint64_t offset = 0;
    friend bool operator==(const stream_position&, const stream_position&) = default;
};

/// A client's IP address and port, compact (each session keeps the one it was created from).
struct peer_address {
    std::array<std::uint8_t, 16> bytes{}; ///< IPv4: the first 4
    std::uint16_t port = 0;
    bool v6 = false;
};

/// A decoded client request. No `sid`: a session creation.
struct client_request {
    std::string sid;
    request_id rid = 0;
    std::optional<request_id> ack;
    /// JSON: the id of the last message the client received on a stream it gave up (it
    /// long-polls again): what followed is delivered by the long-polls (docs/PROTOCOL.md,
    /// "Upgrade").
    std::optional<std::uint64_t> stream_ack;
    bool terminate = false;
    /// JSON: the client has a stream, or is opening one: answered at once, empty.
    bool streaming = false;
    std::optional<std::uint32_t> wait; ///< creation only: seconds
    std::optional<std::uint32_t> hold; ///< creation only
    std::vector<message> messages;
    /// JSON creations: `recover`, the client's cursor per channel (subscribe, and first replay
    /// every message after it). An empty epoch asks only for the channel's position.
    std::vector<std::pair<std::string, stream_position>> recover;
    /// A signed client token (JWT): at creation it says who the client is and what it may do;
    /// on a later request it replaces the session's (a refresh). Empty: none given.
    std::string token;
    /// BOSH requests: every attribute of the <body/> (payloads moved into `messages`).
    std::shared_ptr<const bosh_request> bosh;
    /// Who sent it (set by the server; empty in tests without sockets).
    peer_address peer;
    /// Creations only (set by the server): the request's header fields, for
    /// application::authorize. Empty on every other request.
    std::vector<std::pair<std::string, std::string>> headers;
};

/// Errors a request can meet, each with one protocol condition and one HTTP status.
enum class protocol_error : std::uint8_t {
    item_not_found,   ///< 404: unknown or expired sid, rid outside the window
    bad_request,      ///< 400: malformed body, missing or ill-typed fields
    too_large,        ///< 413 policy-violation: body over the limit
    policy_violation, ///< 403: too many requests, polling too fast
    system_shutdown,  ///< 503: the server is stopping
    rate_limited,     ///< 429 policy-violation: too many session creations from one address
    not_authorized,   ///< 401: no valid token where one is required, or it expired
};
std::string_view condition(protocol_error e) noexcept;
unsigned http_status(protocol_error e) noexcept;
/// The condition a session's end is reported with; empty for a silent end.
std::string_view condition(close_reason r) noexcept;

/// What a session tells its client at creation.
struct session_info {
    std::string_view sid;
    std::chrono::milliseconds wait;
    std::uint32_t hold;
    std::uint32_t requests;
    std::chrono::milliseconds inactivity;
    std::chrono::milliseconds polling;
};

/// Encodes the answers of one transport. One immutable instance per transport, shared.
class session_codec {
public:
    virtual ~session_codec() = default;
    virtual content_kind kind() const noexcept = 0;
    /// The answer to a session creation, with the packets pushed on open.
    virtual packet created(const session_info& info, request_id rid,
                           std::span<const packet> packets) const = 0;
    /// An ordinary answer: the packets, in order (none: an empty answer).
    virtual packet data(request_id rid, std::span<const packet> packets) const = 0;
    /// A held request answered because its session ended (`why` says how).
    virtual packet closing(request_id rid, close_reason why) const = 0;
    /// The answer to the client's own terminate request.
    virtual packet terminated(request_id rid) const = 0;
    /// The answer to a held copy of a request that a newer copy (same rid) replaced.
    virtual packet replaced(request_id rid) const = 0;
    /// An error answer (the status comes from http_status()).
    virtual packet error(protocol_error e) const = 0;
    /// The whole error answer: status and body (BOSH answers errors with 200 and a terminate
    /// body, and with bare legacy codes for `legacy` clients, XEP-0124 §17.1).
    virtual response error_response(protocol_error e, bool legacy = false) const {
        (void)legacy;
        return {http_status(e), kind(), error(e)};
    }
    /// Encodes a JSON value as a packet for this transport's sessions.
    virtual packet encode(const nlohmann::json& value) const = 0;
};

} // namespace megaphone
