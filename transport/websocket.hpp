// WebSocket (RFC 6455): a session's stream and its requests on one connection, at
// GET <mount>?sid=S with `Upgrade: websocket` and `Sec-WebSocket-Protocol: megaphone`
// (docs/PROTOCOL.md, "WebSocket").
//
// To the session layer a WebSocket is a stream like SSE's (transport/stream.hpp): the same
// sink, the same ids and replay window, only the framing differs. Server to client, text frames:
// `{"type":"ready","heartbeat":ms}` once the session took the stream, then batches
// `{"id":N,"messages":[...]}` (N the id of the batch's last message), `{"type":"ping"}` on an
// idle stream every heartbeat (browser code cannot see WebSocket pings), and a last
// `{"type":"terminate",...}` before the close when the session ends. Client to server, text
// frames with the body of a `POST <mount>` of the session: each is handed to the server as that
// POST (the sid filled in), and its answer comes back as a text frame, so rids, acks and the
// answer cache work as over HTTP.
//
// The connection (ws_connection, in websocket.cpp) takes the socket over from the HTTP
// connection once the upgrade request is routed (connection_taker). Beast's websocket::stream
// answers the opening handshake (no extension: permessage-deflate stays off) and is dropped;
// the frames after it are the connection's own work (RFC 6455 section 5, the server's side;
// the framing itself, socket-free, is transport/ws_frames.hpp), because Beast's stream keeps ~2.5
// KiB of fixed buffers per connection for its whole life.
//
// Over HTTPS (wss://) the TLS stream stays with the HTTP connection (TLS state cannot move and
// refers to its socket: connection_taker::take_tls), and the frames go through it.
//
// Memory (an idle WebSocket must stay near a held long-poll): the connection keeps no buffer
// while idle: it waits for readability with a one-byte MSG_PEEK receive, reads what is there
// without blocking into a per-thread scratch buffer, and keeps only an incomplete frame.
#pragma once

#include "transport/http_connection.hpp"
#include "transport/stream.hpp"
#include "transport/ws_frames.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace megaphone {

struct websocket_options {
    /// `{"type":"ping"}` on a stream idle this long (the server takes SSE's --heartbeat).
    std::chrono::milliseconds heartbeat{std::chrono::seconds(15)};
    /// Largest message a client may send (the server takes --max-body): a frame request is a
    /// POST body.
    std::size_t max_message = 64 * 1024;
    /// Origins allowed (the server takes --cors-origin); "*" allows any. A request without
    /// Origin (not a browser) is allowed.
    std::vector<std::string> origins{"*"};
    /// The opening handshake (Beast's) and the closing one must end within this.
    std::chrono::milliseconds handshake_timeout{std::chrono::seconds(30)};
    /// Nothing received from the client for this long (checked every heartbeat, when a ping
    /// frame goes out if nothing came since the last one): the connection is closed, a
    /// half-open client.
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(40)};
    /// Longest time to write one frame to a client that does not read.
    std::chrono::milliseconds write_timeout{std::chrono::seconds(30)};
    /// Frame requests of one connection waiting for their answers at most; beyond, its next
    /// frames are not read until answers are written.
    std::size_t max_in_flight = 4;
};

class websocket_transport final : public stream_transport {
public:
    explicit websocket_transport(websocket_options options = {});

    std::string_view name() const noexcept override { return "websocket"; }
    /// A GET with `Upgrade: websocket` on the mount itself or on "<mount>/<node id>".
    bool accepts(const http::request<http::string_body>& request,
                 std::string_view rest) const override;
    /// `sid` and `lastEventId` from the query.
    std::optional<stream_request>
    parse(const http::request<http::string_body>& request) const override;
    /// 403 for an Origin not allowed, 400 without the `megaphone` subprotocol, else the
    /// connection (plain or TLS) is taken over.
    bool connect(incoming& in) const override;
    /// The close code 4404 (as `status`) with reason "item-not-found".
    response refusal() const override;
    response opening(std::uint64_t first_id, std::span<const packet> packets) const override;
    packet events(std::uint64_t first_id, std::span<const packet> packets) const override;
    packet closing(close_reason why) const override;

    const websocket_options& options() const noexcept { return options_; }
    /// `{"type":"ready","heartbeat":ms}` and `{"type":"ping"}`.
    const packet& ready() const noexcept { return ready_; }
    const packet& ping() const noexcept { return ping_; }

    /// Each frame request goes to this handler as a POST (set by the server before it starts).
    void use_handler(request_handler& handler) noexcept { handler_ = &handler; }

private:
    websocket_options options_;
    packet ready_;
    packet ping_;
    request_handler* handler_ = nullptr;
};

/// `{"id":N,"messages":[...]}`: `packets` numbered from `first_id` on (N the last one's id).
packet websocket_batch(std::uint64_t first_id, std::span<const packet> packets);

} // namespace megaphone
