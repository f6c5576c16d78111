// bus: how a publish reaches every subscriber of its channel, on this node and on every other,
// and how a session finds a channel's past messages. The server publishes and subscribes only
// through this interface; it knows nothing of Redis.
//
// Every message of a channel gets a position (epoch, offset) from the bus when it is published,
// and is delivered *stamped*: a JSON object message gains "epoch" and "offset" members (other
// payloads, BOSH stanzas say, go as they are). Each channel keeps a bounded history of its
// stamped messages, from which a session recovers what it missed.
//
// Two forms: local_bus (cluster/local_bus.hpp), one process, history in memory (the embedded
// default); redis_bus (cluster/redis_bus.hpp), many processes and machines on Redis.
#pragma once

#include "fsm/packet.hpp"
#include "transport/protocol.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace megaphone {

/// What became of a publish.
struct publish_result {
    /// False: the bus could not take the message (Redis unreachable, too slow, its queue full);
    /// nobody got it. True: it has its position and goes to every subscriber.
    bool ok = false;
    stream_position position;
    /// Sessions of this process it reached; unknown (nullopt) when delivery happens later, as
    /// on the Redis bus (the message comes back through Redis to every node, this one too).
    std::optional<std::size_t> sessions;
    /// Why not, when !ok.
    std::string error;
};

/// What a session resuming a channel from a cursor finds.
struct recovery {
    /// True when `messages` are every message after the cursor (or no cursor was given); false
    /// when the history no longer reaches back to it, its epoch is not the channel's, or the
    /// history could not be read. Live messages follow either way.
    bool recovered = false;
    /// Where the session's stream of the channel stands once `messages` are delivered.
    stream_position position;
    /// The stamped messages after the cursor, in order.
    std::vector<packet> messages;
};

/// The bus's way into the server: delivery to this process's subscribers.
class bus_listener {
public:
    virtual ~bus_listener() = default;
    /// A stamped message of `channel`, at `offset`. Calls come in offset order per channel
    /// (never two at once for one channel), maybe under the bus's lock: the listener queues the
    /// delivery and returns. Returns how many sessions of this process the message is for (its
    /// subscribers now).
    virtual std::size_t deliver(std::string_view channel, const packet& stamped,
                                std::uint64_t offset) = 0;
};

struct bus_options {
    /// Messages kept per channel for recovery (0: none), and for how long.
    std::size_t history_size = 100;
    std::chrono::seconds history_ttl{300};
};

class bus {
public:
    virtual ~bus() = default;
    /// Starts delivering to `to`; before any other call.
    virtual void start(bus_listener& to) = 0;
    /// No delivery or callback after it returns (from any thread but the bus's own).
    virtual void stop() = 0;

    /// Gives `payload` the channel's next position, keeps it in the history, delivers it stamped
    /// to every subscriber on every node, and tells `done` (any thread) what became of it. Any
    /// thread. `done` may run before publish() returns: the in-process bus calls it on the
    /// caller's thread once the deliveries are queued, outside its lock.
    virtual void publish(std::string_view channel, packet payload,
                         std::function<void(publish_result)> done) = 0;
    /// This process has subscribers of `channel` now (its first), or has none any more. Calls
    /// for one channel alternate, open first. Any thread.
    virtual void open(std::string_view channel) = 0;
    virtual void close(std::string_view channel) = 0;
    /// The messages of `channel` after `since`. `done` (any thread) is called after every
    /// deliver() of the channel's messages up to the recovery's position and before any later
    /// one, so that a caller which queues deliveries and `done` on one FIFO sees each message
    /// exactly once: in the recovery or live. The channel must be open(). Any thread.
    virtual void recover(std::string_view channel, const stream_position& since,
                         std::function<void(recovery)> done) = 0;

    /// Appends the bus's own metrics to `out`, a GET /metrics answer: Prometheus text format
    /// 0.0.4, each family with its # HELP and # TYPE lines, `megaphone_` names. Any thread.
    virtual void write_metrics(std::string& /*out*/) const {}
};

/// `payload` stamped with its position: `{"epoch":"E","offset":K,` followed by the rest of a
/// JSON object; any other payload (a stanza, a JSON scalar or array) unchanged. `epoch` must be
/// made of characters that need no JSON escaping (the buses make them so).
packet stamp(const packet& payload, std::string_view epoch, std::uint64_t offset);

/// Fills `out` from the operating system's CSPRNG (getrandom).
void fill_random(std::span<unsigned char> out);

/// A new random epoch: 12 URL-safe characters (72 random bits).
std::string new_epoch();

} // namespace megaphone
