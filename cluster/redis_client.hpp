// redis_client: the two Redis connections the cluster bus uses, on hiredis 0.14 driven by one
// Asio io_context: `client` for commands, `subscriber` for pub/sub (Redis puts a connection
// that subscribed into a mode where it takes no other command, so they are separate).
//
// Both connect by themselves and keep reconnecting after any loss, with a fresh hiredis
// context each try (a context that failed is never reused) and a jittered exponential backoff,
// so that nodes do not all hammer a Redis that comes back. A connection counts as up only once
// Redis has answered on it (SELECT for the client, PING for the subscriber): a stopped Redis
// still completes TCP handshakes from its listen backlog, so a connect alone proves nothing.
//
// Stalls: hiredis 0.14 has no command timeouts; the client keeps one Asio timer on the oldest
// command in flight (replies come in order, so the oldest is the first to be late). When it has
// no reply within `command_timeout` and no byte waits unread in the socket (a reply this thread
// was too busy to read is no stall), Redis is stalled (stopped, blocked in a script, or the
// network is gone without a reset) and every later reply on that connection would be late too:
// the client fails that command with `timeout`, drops the connection (the others in flight fail
// with `connection_lost`) and reconnects. Meanwhile commands fail fast with `not_connected`,
// instead of piling up behind a Redis that does not answer. `timeout` and `connection_lost` both
// mean the outcome is unknown: the command may have run. The subscriber applies the same rule to
// its (UN)SUBSCRIBE confirmations, counted from the last bytes received (a confirmation queued
// behind many messages is no stall), and sends a keepalive SUBSCRIBE every `keepalive`, so a
// stall is seen within keepalive + command_timeout even while no channel changes.
//
// Threading: an object and its io_context belong to one thread; every callback runs on it, never
// from inside hiredis (results are collected while hiredis runs and delivered after it has
// returned), so a callback may call anything, including stop() or destroying the object. The one
// exception is stats(), which any thread may call (for /metrics): relaxed atomic counters.
// Destroy the objects before their io_context. hiredis writes with write(2): start() sets
// SIGPIPE to ignored if it is at its default (terminate the process).
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace megaphone::redis {

struct endpoint {
    std::string host;
    unsigned short port = 6379;
    int db = 0;
};

/// `redis://host`, `redis://host:port`, `redis://host:port/db` (an IPv6 host in brackets), or
/// nullopt. Port 6379 and db 0 unless given. The host should be an address or a name the
/// resolver answers at once: hiredis resolves it with a blocking getaddrinfo on each connect.
std::optional<endpoint> parse_url(std::string_view url);

/// A reply, owned (converted from hiredis's redisReply); strings are binary-safe.
struct reply {
    enum class kind : std::uint8_t { nil, integer, string, status, error, array };

    kind type = kind::nil;
    long long integer = 0;
    std::string str;             // string, status and error
    std::vector<reply> elements; // array

    bool is_nil() const noexcept { return type == kind::nil; }
    bool is_error() const noexcept { return type == kind::error; }
};

/// Why a command has no reply. An error reply from Redis is not one of these: it arrives as a
/// reply of kind `error`.
enum class errc {
    not_connected = 1, // no connection up now (fail fast: the caller answers 503)
    queue_full,        // max_pending commands already in flight
    timeout,           // no reply within command_timeout (the connection is then dropped)
    connection_lost,   // the connection ended before the reply came
    bad_command,       // an empty argv
};

const std::error_category& category() noexcept;
std::error_code make_error_code(errc e) noexcept;

struct client_options {
    std::chrono::milliseconds command_timeout{1000};
    std::chrono::milliseconds connect_timeout{1000}; // TCP connect and first answer
    std::size_t max_pending = 10'000;                // commands in flight (sent or queued)
    std::chrono::milliseconds backoff_min{100};
    std::chrono::milliseconds backoff_max{5000};
};

/// client::stats(): counters since construction, readable from any thread.
struct client_stats {
    std::uint64_t commands = 0;      // accepted and sent to Redis
    std::uint64_t errors = 0;        // completed with an errc (timeouts included)
    std::uint64_t error_replies = 0; // answered with an error reply
    std::uint64_t timeouts = 0;
    std::uint64_t reconnects = 0; // connections up after the first one
    bool connected = false;       // up: answered its probe (SELECT), not lost since
};

namespace detail {
class client_impl;
class subscriber_impl;
} // namespace detail

/// One command connection.
class client {
public:
    /// Called exactly once per command (unless stop() came first): an errc, or the reply.
    using callback = std::function<void(std::error_code, reply)>;

    client(boost::asio::io_context& ioc, endpoint where, client_options options = {});
    ~client(); // stop()
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    /// Connects, and from then on reconnects after every loss, until stop().
    void start();
    /// Closes the connection and cancels everything: no callback of this object runs after it,
    /// not even for the commands in flight (their callbacks are destroyed uncalled).
    void stop();

    /// Sends `argv` as one command (binary-safe). Failures (not connected, queue full) are
    /// delivered through `cb` too, posted, never from inside this call.
    void command(std::vector<std::string> argv, callback cb);

    /// Each time a connection is up (SELECT answered), the first time included.
    void on_connected(std::function<void()> f);
    /// Each time an up connection is lost (not for failed attempts).
    void on_disconnected(std::function<void()> f);

    /// Up now (on the object's thread).
    bool connected() const noexcept;
    /// Any thread.
    client_stats stats() const noexcept;

private:
    std::shared_ptr<detail::client_impl> impl_;
};

struct subscriber_options {
    std::chrono::milliseconds command_timeout{1000}; // for each (UN)SUBSCRIBE confirmation
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds keepalive{5000}; // a SUBSCRIBE to a private channel, as a ping
    std::chrono::milliseconds backoff_min{100};
    std::chrono::milliseconds backoff_max{5000};
    std::size_t batch = 512; // channels per SUBSCRIBE / UNSUBSCRIBE command
};

/// subscriber::stats(): readable from any thread.
struct subscriber_stats {
    std::uint64_t messages = 0; // delivered to on_message
    std::uint64_t reconnects = 0;
    std::size_t channels = 0; // wanted now
    bool connected = false;
};

/// The pub/sub connection: keeps the set of wanted channels subscribed across reconnects.
class subscriber {
public:
    using message_handler = std::function<void(std::string_view channel, std::string_view data)>;
    using channel_handler = std::function<void(std::string_view channel)>;

    subscriber(boost::asio::io_context& ioc, endpoint where, subscriber_options options = {});
    ~subscriber(); // stop()
    subscriber(const subscriber&) = delete;
    subscriber& operator=(const subscriber&) = delete;

    void start();
    /// Closes the connection; no callback of this object runs after it.
    void stop();

    /// Adds `channel` to the wanted set (nothing if it is in it). The calls of one handler run
    /// are sent together, in SUBSCRIBE commands of up to `batch` channels.
    void subscribe(std::string_view channel);
    /// Removes `channel` from the wanted set: its messages are no longer delivered from now on,
    /// even those Redis sent before it confirmed the UNSUBSCRIBE.
    void unsubscribe(std::string_view channel);
    bool wanted(std::string_view channel) const;

    /// Each message of a wanted channel; the views are valid during the call. (The handlers are
    /// called in place: one must not replace itself while it runs.)
    void on_message(message_handler f);
    /// Each time Redis confirms a SUBSCRIBE of a wanted channel, again after every reconnect:
    /// from then on no message is missed until the next on_disconnected (the bus catches up on
    /// what was published before).
    void on_subscribed(channel_handler f);
    void on_connected(std::function<void()> f);
    void on_disconnected(std::function<void()> f);

    /// Up now (on the object's thread).
    bool connected() const noexcept;
    /// Any thread.
    subscriber_stats stats() const noexcept;

private:
    std::shared_ptr<detail::subscriber_impl> impl_;
};

} // namespace megaphone::redis

template <>
struct std::is_error_code_enum<megaphone::redis::errc> : std::true_type {};
