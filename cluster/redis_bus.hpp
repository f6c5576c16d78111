// redis_bus: the bus of many processes and machines, on Redis (one or several servers: each
// channel lives on one, chosen by a stable hash of its name).
//
// Per channel, in Redis (docs/ARCHITECTURE.md, "A publish crossing nodes"):
//   mp:{C}:meta   hash: epoch, offset         mp:{C}:log   stream: id "<offset>-0", field d
//   mp:{C}        the pub/sub channel: "<epoch> <offset> <payload>"
// One Lua script gives a message its offset, appends it to the history (MAXLEN history_size,
// both keys expire history_ttl after the last publish) and publishes it, atomically; when the
// meta hash is gone (a Redis that lost its data, or a channel idle for the ttl) the script starts
// a new epoch. A publish is acknowledged only once Redis has run the script.
//
// A node subscribes only to the channels it has subscribers of (open/close), on a connection of
// its own. Each open channel keeps the position of the last message delivered here: a message
// that skips offsets (a subscription that was down, a reconnect) makes the node read the
// history from that position first, and a duplicate is dropped, so the node's subscribers see
// every offset once, in order. While a read of the history is in flight for a channel, its
// pub/sub messages wait, so deliveries and recoveries keep the bus's order (bus::recover).
//
// A session's read that fails (Redis down, restarting, loading its data) is tried again every
// 500 ms for up to `recovery_patience`, the channel's live messages flowing meanwhile (the
// session is not yet among their receivers); the read that succeeds answers it with everything
// after its cursor up to where this node's delivery then stands. Only once the patience has run
// out is it told recovered: false.
//
// Everything runs on one io_context (the server's first I/O thread); the public calls may come
// from any thread and are posted there.
#pragma once

#include "cluster/bus.hpp"
#include "cluster/redis_client.hpp"

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace megaphone {

struct redis_bus_options {
    /// One or more Redis servers; channels are spread over them by a stable hash.
    std::vector<redis::endpoint> servers;
    redis::client_options client;
    redis::subscriber_options subscriber;
    /// How long a session's recovery from a cursor waits for a Redis whose history cannot be
    /// read (down, restarting, loading its appendonly file) before it is told recovered: false
    /// at this node's position. 10 s: a restart with its data, and the clients' reconnect
    /// backoff (at most 5 s), usually fit in it, and a client is not left waiting long for a
    /// Redis that is really gone. 0: at the first failure.
    std::chrono::milliseconds recovery_patience{10'000};
};

/// What the Redis bus has done, for /metrics (read from any thread).
struct redis_bus_stats {
    std::uint64_t messages = 0;   // pub/sub messages delivered to this node
    std::uint64_t catch_ups = 0;  // history reads to fill a gap
    std::uint64_t caught_up = 0;  // messages delivered from the history
    std::uint64_t recoveries = 0; // sessions' subscriptions from a cursor (not position-only)
    std::uint64_t recovered = 0;  // messages those got from the history
    std::uint64_t publish_failures = 0;
    unsigned servers = 0;
};

class redis_bus final : public bus {
public:
    redis_bus(boost::asio::io_context& ioc, redis_bus_options options, bus_options history);
    ~redis_bus() override;

    void start(bus_listener& to) override;
    void stop() override;
    void publish(std::string_view channel, packet payload,
                 std::function<void(publish_result)> done) override;
    void open(std::string_view channel) override;
    void close(std::string_view channel) override;
    void recover(std::string_view channel, const stream_position& since,
                 std::function<void(recovery)> done) override;

    redis_bus_stats stats() const noexcept;
    /// Per Redis server (label server="host:port", "/db" added when not 0): megaphone_redis_up,
    /// _commands_total, _errors_total, _error_replies_total, _timeouts_total, _reconnects_total;
    /// and the bus's counters (stats()): megaphone_bus_messages_total, _catch_ups_total,
    /// _caught_up_messages_total, _recoveries_total, _recovered_messages_total,
    /// _publish_failures_total. Any thread.
    void write_metrics(std::string& out) const override;

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

} // namespace megaphone
