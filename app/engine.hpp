// engine: all sessions of one thread (a shard), with their channels and timers. No sockets and
// no Asio: the server runs one engine per I/O thread, and the testing kit runs one with a manual
// clock. Every call must come from the engine's own thread.
//
// Sessions that close while the engine is busy (an overflow during a publish, say) are reaped
// when the outermost call returns: the application's on_close runs then, outside any state
// machine, so it may push and publish freely.
#pragma once

#include "app/application.hpp"
#include "app/session.hpp"
#include "fsm/clock.hpp"
#include "fsm/string_map.hpp"
#include "fsm/timer_queue.hpp"
#include "transport/exchange.hpp"
#include "transport/protocol.hpp"
#include "transport/stream.hpp"

#include <boost/container/small_vector.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace megaphone {

/// Session limits and protocol timing. Names are BOSH's.
struct session_rules;

struct engine_config {
    /// Longest a request is held before an empty answer (BOSH `wait`); caps the client's value.
    /// 60 s: the design this project comes from, and Strophe.js's default.
    std::chrono::milliseconds max_wait{std::chrono::seconds(60)};
    /// A session with no held request for this long is closed (BOSH `inactivity`). 45 s: long
    /// enough for a client to come back after a lost response on a bad mobile network.
    std::chrono::milliseconds inactivity{std::chrono::seconds(45)};
    /// Shortest interval between two empty requests of a polling session (BOSH `polling`).
    std::chrono::milliseconds polling{std::chrono::seconds(2)};
    /// Most requests held at once (BOSH `hold`); caps the client's value. 1: the usual two
    /// connections, one held and one sending.
    std::uint16_t max_hold = 1;
    /// Longest pause a BOSH client may ask for (BOSH `maxpause`, §10). 120 s, as ejabberd.
    std::chrono::milliseconds maxpause{std::chrono::seconds(120)};
    /// A BOSH client whose `ack` shows it missed an answer sent longer ago than this is told
    /// at once with `report`/`time` (§9.2); younger answers may simply still be in flight.
    std::chrono::milliseconds report_after{std::chrono::seconds(1)};
    /// Packets queued per session beyond this close it with policy-violation (queue_overflow).
    std::uint32_t max_queue = 1000;
    /// Most sessions at once; 0: no limit. Creations beyond it get policy-violation. Per engine,
    /// or across every engine that shares one count (share_session_count(): the server's).
    std::size_t max_sessions = 0;
    /// Node-id prefix of session ids ("n0" gives "n0-...").
    std::string node_id = "n0";
    /// Tokens and what sessions may do (app/access.hpp); null: the defaults (no tokens, no
    /// subscribing to private- channels without one, publishing anywhere).
    std::shared_ptr<const session_rules> rules;
};

/// Told, on the engine's thread, when a channel gets its first member in an engine and when it
/// loses its last (the server uses it to post a publish only to engines with subscribers).
class channel_observer {
public:
    virtual ~channel_observer() = default;
    /// The shard's first subscriber of `channel`. May return a counter the engine then keeps
    /// up to date with its live members of the channel (added to, subtracted from; shared by
    /// every shard), valid until the shard's channel_closed; null: none kept.
    virtual std::atomic<std::int64_t>* channel_opened(unsigned shard, std::string_view channel) = 0;
    virtual void channel_closed(unsigned shard, std::string_view channel) = 0;
};

/// Where an engine finds a channel's past messages: the server (its bus), the testing kit (its
/// own local bus).
class history_source {
public:
    virtual ~history_source() = default;
    /// The messages of `channel` after `since` (bus::recover). `done` must run on the thread of
    /// engine `shard`, after every publish() into it of the channel's messages up to the
    /// recovery's position and before any later one.
    virtual void recover(unsigned shard, std::string_view channel, const stream_position& since,
                         std::function<void(recovery)> done) = 0;
};

struct channel {
    /// Its name: the engine's key for it (stays put while the channel lives).
    std::string_view name() const noexcept { return *key; }
    const std::string* key = nullptr;
    /// Inline while there is one: a delivery to a channel of one subscriber reads the session's
    /// address from the table's own node.
    boost::container::small_vector<session*, 1> members;
    /// The observer's count of the channel's members on every shard (channel_observer); null:
    /// none.
    std::atomic<std::int64_t>* members_everywhere = nullptr;
    /// Subscribed from a cursor, waiting for the history: publishes pass them by (the
    /// recovery brings those messages). Null while there are none (most of the time).
    std::unique_ptr<std::vector<session*>> recovering;
};

class engine {
public:
    /// `shard` is this engine's index; it is written into its session ids so that any thread
    /// can route a sid to its engine.
    engine(const engine_config& config, clock_source& clock, broker& broker, unsigned shard);
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    // From the transports (requests already decoded).
    void create(client_request&& req, application& app, const session_codec& codec, exchange ex);
    void request(client_request&& req, const session_codec& codec, exchange ex);
    void connection_lost(std::string_view sid, request_id rid, const exchange& ex);
    /// A stream of `transport` (SSE) for session `req.sid`, from the client's position; an
    /// unknown or ended session, or one of another transport (BOSH), gets the refusal.
    void open_stream(const stream_request& req, const stream_transport& transport, exchange ex);
    /// The stream `ex` of session `sid` wrote its last piece whole.
    void stream_written(std::string_view sid, const exchange& ex);

    // From the broker. Each returns how many sessions it reached.
    bool push(std::string_view sid, const packet& p);
    /// Calls f with the live session `sid`; false (f not called) when there is none.
    bool with_session(std::string_view sid, const std::function<void(session&)>& f);
    std::size_t publish(std::string_view channel, const packet& p);
    std::size_t broadcast(const packet& p);
    bool subscribe(std::string_view sid, std::string_view channel);
    bool unsubscribe(std::string_view sid, std::string_view channel);
    bool close(std::string_view sid, close_reason why = close_reason::server_terminate);
    /// Ends every session with system_shutdown.
    void shutdown();

    // Time.
    void expire_timers();
    std::optional<time_point> next_deadline() const noexcept { return timers_.next_deadline(); }

    /// Where subscriptions from a cursor find their history (none: nullptr, every recovery
    /// then answers recovered: false at once).
    void use_history(history_source* h) noexcept { history_ = h; }

    /// Reports channels appearing and disappearing in this engine to `o` (none: nullptr).
    void observe_channels(channel_observer* o) noexcept { observer_ = o; }
    /// True while a call into this engine is running (a publish now would re-enter it).
    bool busy() const noexcept { return depth_ > 0; }

    // Introspection.
    session* find(std::string_view sid) noexcept;
    std::size_t size() const noexcept { return sessions_.size(); }
    std::size_t subscribers(std::string_view channel) const noexcept;
    template <class F>
    void for_each(F&& f) const {
        for (const auto& [id, s] : sessions_)
            f(*s);
    }

    const engine_config& config() const noexcept { return config_; }
    clock_source& clock() noexcept { return clock_; }
    timer_queue& timers() noexcept { return timers_; }
    megaphone::broker& broker() noexcept { return broker_; }
    unsigned shard() const noexcept { return shard_; }
    /// Counts this engine's sessions in `total` too, and applies max_sessions to it: the
    /// server's engines share one count. Call before the first session.
    void share_session_count(std::atomic<std::size_t>& total) noexcept { total_ = &total; }

    /// The shard index written into `sid`, or nullopt when `sid` is not one of ours.
    static std::optional<unsigned> shard_of(std::string_view sid) noexcept;

private:
    friend class session;

    /// Counts nesting; the outermost scope reaps sessions closed meanwhile.
    class operation {
    public:
        explicit operation(engine& e)
            : e_{e} {
            ++e_.depth_;
        }
        ~operation();

    private:
        engine& e_;
    };

    void schedule_reap(session* s) { reap_.push_back(s); }
    void reap();
    void remember_overflow(std::string_view sid);
    void join(session& s, std::string_view channel, bool recovering = false);
    /// Subscribes `s` from `since` (session::subscribe(channel, since)).
    void resume(session& s, std::string_view channel, const stream_position& since);
    /// `s`, subscribed to `channel` already, asks only for its position: it stays a member (a
    /// message on its way to it still arrives), and hears the position after that message.
    void tell_position(session& s, std::string_view channel);
    /// The history has answered `s`'s subscription from a cursor.
    void recovered(std::string_view sid, std::string_view channel, recovery r);
    void leave(session& s, std::size_t subscription_index);
    std::string make_sid();

    const engine_config& config_;
    clock_source& clock_;
    megaphone::broker& broker_;
    unsigned shard_;
    timer_queue timers_;
    std::unordered_map<std::string_view, std::unique_ptr<session>> sessions_;
    /// By name, each channel in its table node (a lookup reads the node, not a node and then the
    /// channel).
    string_map<channel> channels_;
    std::vector<session*> reap_;
    /// Sessions ended by queue overflow, remembered (at most 1,024, for `inactivity`) so that
    /// their client's next request is told policy-violation rather than item-not-found.
    std::unordered_map<std::string, time_point> overflowed_;
    std::deque<std::string> overflowed_order_;
    std::atomic<std::size_t>* total_ = nullptr;
    channel_observer* observer_ = nullptr;
    history_source* history_ = nullptr;
    int depth_ = 0;
};

/// `bytes` random bytes from the operating system's CSPRNG (getrandom), URL-safe base64.
std::string random_token(std::size_t bytes);

} // namespace megaphone
