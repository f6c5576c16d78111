// stream_relay: a stream (SSE or WebSocket) of a session of another node, relayed byte for
// byte. Forwarding (cluster/forwarder.hpp) relays one request and its one answer; a stream is
// neither, so the client's connection itself is taken over (connection_taker, as a WebSocket
// takes it) and joined to a new connection of its own to the owning node: the request goes there
// as it came, with the cluster's headers, and from then on whatever either side sends is written
// to the other (the SSE head and events, the WebSocket's 101 and its frames both ways), until
// either side closes, which closes both. The owning node runs the stream as for a client of its
// own (its session's sink, heartbeats, replay); this node only copies bytes.
//
// Failures before anything is relayed (no address for the node, connect refused or over the
// connect timeout) are answered here as the owner would answer an unknown session: `204` for
// SSE (an EventSource stops), `404` before the upgrade for a WebSocket (a failed probe: the
// client goes on long-polling, whose forwarding then tells it item-not-found).
//
// Memory: two 8 KiB buffers while the relay lives (allocated once the owner is connected),
// besides the two sockets; a relayed stream costs far more than a local one, as a forwarded
// long-poll does. Route `<mount>/<node id>` to the node itself where the balancer can.
#pragma once

#include "cluster/forwarder.hpp"
#include "transport/http_connection.hpp"

#include <functional>
#include <memory>
#include <string>

namespace megaphone {

struct stream_relay_options {
    std::string node_id;     ///< this node (X-Megaphone-Forwarded-By)
    std::string cluster_key; ///< X-Megaphone-Cluster-Key
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(2)};
};

/// Calls `found` with the owning node's address ("" when unknown), on any thread.
using node_lookup = std::function<void(std::function<void(std::string address)> found)>;

/// Sets `in.taker` to a relay of the stream `in` opens to the node `lookup` finds. During
/// request_handler::handle(), with `in.context` set.
void relay_stream(incoming& in, const stream_relay_options& options, node_lookup lookup,
                  std::shared_ptr<forwarding_stats> stats);

} // namespace megaphone
