#include "cluster/redis_bus.hpp"

#include "fsm/string_map.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <openssl/sha.h>

#include <algorithm>
#include <charconv>
#include <future>
#include <utility>

namespace megaphone {

namespace net = boost::asio;

namespace {

// KEYS: meta, log. ARGV: pub/sub channel, payload, history size, ttl (s), a new epoch in case
// the channel has none. Returns {epoch, offset}.
constexpr std::string_view publish_script = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], string.format('%d-0', offset), 'd', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[1], epoch .. ' ' .. string.format('%d', offset) .. ' ' .. ARGV[2])
return {epoch, offset}
)lua";

// KEYS: meta, log. ARGV: epoch, offset (the reader's position), a new epoch in case the channel
// has none, ttl (s). Returns {epoch, offset, entries after the reader's position when its epoch
// is the channel's}.
constexpr std::string_view read_script = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local offset = 0
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
else
  offset = tonumber(redis.call('HGET', KEYS[1], 'offset'))
end
local entries = {}
local from = tonumber(ARGV[2])
if ARGV[1] == epoch and from < offset then
  entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', from + 1), '+')
end
return {epoch, offset, entries}
)lua";

std::string sha1_hex(std::string_view text) {
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (const unsigned char b : digest) {
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    return out;
}

std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 1469598103934665603ull;
    for (const char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h;
}

constexpr std::string_view channel_prefix = "mp:{";

std::string pubsub_name(std::string_view channel) {
    std::string out{channel_prefix};
    out += channel;
    out += '}';
    return out;
}

/// A family's # HELP and # TYPE lines (Prometheus text format 0.0.4).
void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

/// One sample; `labels` is the inside of the braces ("" for none).
void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
    out += name;
    if (!labels.empty()) {
        out += '{';
        out += labels;
        out += '}';
    }
    out += ' ';
    out += std::to_string(value);
    out += '\n';
}

/// server="host:port" (an IPv6 host in brackets, "/db" when not 0), escaped for a label value.
std::string server_label(const redis::endpoint& ep) {
    std::string where = ep.host.find(':') == std::string::npos ? ep.host : "[" + ep.host + "]";
    where += ':' + std::to_string(ep.port);
    if (ep.db != 0)
        where += '/' + std::to_string(ep.db);
    std::string out = "server=\"";
    for (const char c : where) {
        if (c == '\\' || c == '"')
            out += '\\';
        if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    out += '"';
    return out;
}

std::optional<std::uint64_t> to_offset(std::string_view text) {
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end == text.data())
        return std::nullopt;
    return v;
}

} // namespace

struct redis_bus::impl : std::enable_shared_from_this<impl> {
    impl(net::io_context& io, redis_bus_options o, bus_options h)
        : ioc{io}
        , options{std::move(o)}
        , history{h}
        , publish_sha{sha1_hex(publish_script)}
        , read_sha{sha1_hex(read_script)}
        , epoch_base{new_epoch().substr(0, 10)} {}

    struct link {
        std::unique_ptr<redis::client> commands;
        std::unique_ptr<redis::subscriber> subscriber;
    };
    /// A message of a channel, waiting while its history is read.
    struct live {
        std::string epoch;
        std::uint64_t offset;
        std::string payload;
        bool checked = false; // a history read was answered since it came
    };
    /// A session's subscription from a cursor, waiting for its read.
    struct session_read {
        stream_position since;
        std::function<void(recovery)> done; // emptied once called: a session is answered once
        /// While reads fail, it is tried again until then (recovery_patience after it came).
        std::chrono::steady_clock::time_point give_up;
        bool in_flight = false; // its read is in Redis now (else it waits for the next try)
    };
    /// An open channel: where this node's delivery stands.
    struct stream {
        /// Tells this stream from an earlier one of the same name (closed, opened again): a
        /// read or a retry of the earlier one finds nothing to do here.
        std::uint64_t generation = 0;
        bool known = false; // no message delivered and no history read yet
        std::string epoch;
        std::uint64_t last = 0;
        int reads = 0; // history reads in flight: live messages wait meanwhile
        std::deque<live> waiting;
        bool retry_scheduled = false;
        /// Sessions' reads not answered yet: in flight, or failed and waiting to be tried again
        /// (live messages flow meanwhile; the answer, when it comes, brings them too).
        std::vector<std::shared_ptr<session_read>> sessions;
    };

    net::io_context& ioc;
    redis_bus_options options;
    bus_options history;
    std::string publish_sha, read_sha;
    std::string epoch_base;
    std::uint64_t epoch_counter = 0;
    std::uint64_t generations = 0;
    std::vector<link> links;
    /// Set (release) once start() has filled `links`: write_metrics() reads them from any
    /// thread after it (acquire); they are never changed again (stop() only stops them).
    std::atomic<bool> started{false};
    bus_listener* listener = nullptr;
    bool stopped = false;
    string_map<stream> streams;

    std::atomic<std::uint64_t> messages{0}, catch_ups{0}, caught_up{0}, recoveries{0},
        recovered_messages{0}, publish_failures{0};

    std::string epoch_candidate() { return epoch_base + std::to_string(++epoch_counter); }

    link& link_of(std::string_view channel) { return links[fnv1a(channel) % links.size()]; }

    void start(bus_listener& to) {
        listener = &to;
        for (const redis::endpoint& ep : options.servers) {
            link l;
            l.commands = std::make_unique<redis::client>(ioc, ep, options.client);
            l.subscriber = std::make_unique<redis::subscriber>(ioc, ep, options.subscriber);
            std::weak_ptr<impl> weak = weak_from_this();
            l.subscriber->on_message([weak](std::string_view name, std::string_view data) {
                if (auto self = weak.lock())
                    self->on_message(name, data);
            });
            l.subscriber->on_subscribed([weak](std::string_view name) {
                if (auto self = weak.lock())
                    self->on_subscribed(name);
            });
            l.commands->start();
            l.subscriber->start();
            links.push_back(std::move(l));
        }
        started.store(true, std::memory_order_release);
    }

    void stop() {
        stopped = true;
        listener = nullptr;
        for (link& l : links) {
            l.commands->stop();
            l.subscriber->stop();
        }
        // Sessions still waiting for a history (Redis down, say) are answered now, not once
        // their patience has run out: the node is going, nothing will come.
        std::vector<std::shared_ptr<session_read>> unanswered;
        for (auto& entry : streams)
            for (auto& s : entry.second.sessions)
                unanswered.push_back(std::move(s));
        streams.clear();
        for (const auto& s : unanswered)
            answer(*s, recovery{});
    }

    /// Calls a session's `done`, unless it was called already.
    static void answer(session_read& s, recovery r) {
        if (auto done = std::exchange(s.done, nullptr))
            done(std::move(r));
    }

    /// Runs `argv` as the script `sha`, loading it (EVAL) when Redis does not know it yet.
    void eval(link& l, std::string_view script, const std::string& sha,
              std::vector<std::string> argv, redis::client::callback done) {
        argv.insert(argv.begin(), {"EVALSHA", sha});
        auto* commands = l.commands.get();
        auto retry_argv = argv;
        commands->command(std::move(argv),
                          [self = shared_from_this(), commands, script,
                           retry_argv = std::move(retry_argv),
                           done = std::move(done)](std::error_code ec, redis::reply r) mutable {
                              if (!ec && r.is_error() && r.str.starts_with("NOSCRIPT")) {
                                  retry_argv[0] = "EVAL";
                                  retry_argv[1] = std::string(script);
                                  return commands->command(std::move(retry_argv), std::move(done));
                              }
                              done(ec, std::move(r));
                          });
    }

    //----------------------------------------------------------------------------------------
    // Publish

    void publish(const std::string& channel, packet payload,
                 std::function<void(publish_result)> done) {
        auto fail = [this, &done](std::string why) {
            ++publish_failures;
            if (done)
                done(publish_result{false, {}, std::nullopt, std::move(why)});
        };
        if (stopped || links.empty())
            return fail("the bus is stopped");
        std::string base = std::string(channel_prefix) + channel + "}:";
        eval(link_of(channel), publish_script, publish_sha,
             {"2", base + "meta", base + "log", pubsub_name(channel), std::string(payload.view()),
              std::to_string(history.history_size), std::to_string(history.history_ttl.count()),
              epoch_candidate()},
             [self = shared_from_this(), done = std::move(done)](std::error_code ec,
                                                                 redis::reply r) {
                 publish_result result;
                 if (ec) {
                     result.error = "redis: " + ec.message();
                 } else if (r.is_error()) {
                     result.error = "redis: " + r.str;
                 } else if (r.type != redis::reply::kind::array || r.elements.size() != 2 ||
                            r.elements[1].type != redis::reply::kind::integer) {
                     result.error = "redis: unexpected answer to the publish script";
                 } else {
                     result.ok = true;
                     result.position = {r.elements[0].str,
                                        static_cast<std::uint64_t>(r.elements[1].integer)};
                 }
                 if (!result.ok)
                     ++self->publish_failures;
                 if (done)
                     done(std::move(result));
             });
    }

    //----------------------------------------------------------------------------------------
    // Subscriptions and live messages

    void open(const std::string& channel) {
        if (stopped || links.empty())
            return;
        auto added = streams.try_emplace(channel);
        if (added.second)
            added.first->second.generation = ++generations;
        link_of(channel).subscriber->subscribe(pubsub_name(channel));
    }

    void close(const std::string& channel) {
        if (stopped || links.empty())
            return;
        link_of(channel).subscriber->unsubscribe(pubsub_name(channel));
        auto it = streams.find(channel);
        if (it == streams.end())
            return;
        // A channel closes once this node has nobody on it: the sessions still waiting for a
        // history have left it, so their answer goes nowhere; they are not kept trying.
        auto unanswered = std::move(it->second.sessions);
        streams.erase(it);
        for (const auto& s : unanswered)
            answer(*s, recovery{});
    }

    static std::optional<std::string_view> channel_of(std::string_view name) {
        if (!name.starts_with(channel_prefix) || !name.ends_with('}'))
            return std::nullopt;
        return name.substr(channel_prefix.size(), name.size() - channel_prefix.size() - 1);
    }

    void on_subscribed(std::string_view name) {
        // From now on no message is missed; what came while the subscription was down (a
        // reconnect) is read from the history.
        auto channel = channel_of(name);
        if (!channel)
            return;
        auto it = streams.find(*channel);
        if (it == streams.end())
            return;
        // Redis is back, it seems: the sessions waiting for it try again now (their reads serve
        // the catch-up too).
        if (!retry_sessions(it->first, it->second) && it->second.known)
            read(it->first, nullptr);
    }

    void on_message(std::string_view name, std::string_view data) {
        auto channel = channel_of(name);
        if (!channel)
            return;
        auto it = streams.find(*channel);
        if (it == streams.end())
            return;
        // "<epoch> <offset> <payload>"
        const auto first = data.find(' ');
        const auto second = first == std::string_view::npos ? first : data.find(' ', first + 1);
        if (second == std::string_view::npos)
            return;
        auto offset = to_offset(data.substr(first + 1, second - first - 1));
        if (!offset)
            return;
        ++messages;
        stream& st = it->second;
        st.waiting.push_back({std::string(data.substr(0, first)), *offset,
                              std::string(data.substr(second + 1)), false});
        drain(it->first, st);
    }

    /// Delivers the waiting live messages in order, unless a read is in flight; a gap (or a
    /// new epoch) starts a read of the history, and the rest waits for it.
    void drain(const std::string& channel, stream& st) {
        while (st.reads == 0 && !st.waiting.empty()) {
            live& m = st.waiting.front();
            if (st.known && m.epoch == st.epoch && m.offset <= st.last) {
                st.waiting.pop_front(); // had it already (from the history)
                continue;
            }
            if (st.known && (m.epoch != st.epoch || m.offset != st.last + 1) && !m.checked) {
                // Once per message and answered read: the history tells what came between (or
                // that the stream changed). A message that still does not follow after that
                // starts from itself: the history did not reach back, or its stream is newer
                // than the one read. (A read that failed told nothing: on_read clears `checked`.)
                m.checked = true;
                ++catch_ups;
                read(channel, nullptr);
                return;
            }
            st.known = true;
            st.epoch = std::move(m.epoch);
            st.last = m.offset;
            deliver(channel, packet::from(m.payload), st);
            st.waiting.pop_front();
        }
    }

    void deliver(std::string_view channel, const packet& payload, const stream& st) {
        if (listener)
            listener->deliver(channel, stamp(payload, st.epoch, st.last), st.last);
    }

    //----------------------------------------------------------------------------------------
    // History reads: to fill a gap (`session` null), or for a session's cursor

    void recover(const std::string& channel, const stream_position& since,
                 std::function<void(recovery)> done) {
        if (!since.epoch.empty())
            ++recoveries; // (an empty cursor only asks for the position)
        auto it = streams.find(channel);
        if (stopped || links.empty() || it == streams.end())
            return done(recovery{});
        auto session = std::make_shared<session_read>();
        session->since = since;
        session->done = std::move(done);
        session->give_up = std::chrono::steady_clock::now() + options.recovery_patience;
        it->second.sessions.push_back(session);
        read(it->first, std::move(session));
    }

    void read(const std::string& channel, std::shared_ptr<session_read> session) {
        stream& st = streams.at(channel);
        // Read from the earlier of this node's position and the session's cursor (same epoch):
        // the answer then serves both.
        stream_position from;
        if (st.known) {
            from = {st.epoch, st.last};
            if (session && session->since.epoch == st.epoch)
                from.offset = std::min(from.offset, session->since.offset);
        } else if (session) {
            from = session->since;
        }
        ++st.reads;
        if (session)
            session->in_flight = true;
        std::string base = std::string(channel_prefix) + channel + "}:";
        eval(link_of(channel), read_script, read_sha,
             {"2", base + "meta", base + "log", from.epoch, std::to_string(from.offset),
              epoch_candidate(), std::to_string(history.history_ttl.count())},
             [self = shared_from_this(), channel, generation = st.generation,
              session = std::move(session)](std::error_code ec, redis::reply r) {
                 self->on_read(channel, generation, session, ec, r);
             });
    }

    void on_read(const std::string& channel, std::uint64_t generation,
                 const std::shared_ptr<session_read>& session, std::error_code ec,
                 const redis::reply& r) {
        auto it = streams.find(channel);
        if (stopped || it == streams.end() || it->second.generation != generation) {
            // Closed meanwhile (or the node stopped): its sessions have had their answer then.
            if (session)
                answer(*session, recovery{});
            return;
        }
        stream& st = it->second;
        --st.reads;
        if (session)
            session->in_flight = false;
        const bool good = !ec && !r.is_error() && r.type == redis::reply::kind::array &&
                          r.elements.size() == 3 &&
                          r.elements[1].type == redis::reply::kind::integer;
        if (!good) {
            // Redis is unreachable, slow or loading its data. A session waits for it (tried
            // again with the catch-ups) while its patience lasts; then it joins live where this
            // node stands, told recovered: false. Live messages are not held for it meanwhile:
            // it is not among their receivers yet, and the answer that comes brings them.
            if (session && std::chrono::steady_clock::now() >= session->give_up)
                finish(st, session, recovery{false, {st.epoch, st.last}, {}});
            // A catch-up that failed (the command connection not back yet after a reconnect,
            // say) is tried again until it succeeds: nothing else may come to trigger it.
            // The waiting messages' gaps are still unknown: none of them may be delivered from
            // itself (that would skip what the history holds) until a read is answered.
            for (live& m : st.waiting)
                m.checked = false;
            if (st.known || !st.waiting.empty() || !st.sessions.empty())
                retry_later(channel, st);
            return;
        }
        const std::string& epoch = r.elements[0].str;
        const auto offset = static_cast<std::uint64_t>(r.elements[1].integer);
        struct entry {
            std::uint64_t offset;
            packet payload;
        };
        std::vector<entry> entries;
        for (const redis::reply& e : r.elements[2].elements) {
            // [id "<offset>-0", ["d", payload]]
            if (e.elements.size() != 2 || e.elements[1].elements.size() != 2)
                continue;
            const std::string& id = e.elements[0].str;
            auto k = to_offset(std::string_view(id).substr(0, id.find('-')));
            if (k)
                entries.push_back({*k, packet::from(e.elements[1].elements[1].str)});
        }

        // This node's subscribers first: what they have not had yet, in order.
        if (!st.known || st.epoch != epoch) {
            const bool was_known = st.known;
            st.known = true;
            st.epoch = epoch;
            st.last = offset;
            if (was_known && offset > 0) {
                // A new epoch (Redis lost the channel): deliver it from its start.
                st.last = 0;
                read(channel, nullptr);
            }
        } else {
            for (const entry& e : entries)
                if (e.offset == st.last + 1) {
                    st.last = e.offset;
                    ++caught_up;
                    deliver(channel, e.payload, st);
                }
            // A history that does not reach back to this node's position: those messages are
            // lost to it (older than the history); it goes on from the channel's position.
            if (st.last < offset)
                st.last = offset;
        }

        // Then the session, between the messages delivered so far and the ones to come.
        if (session) {
            recovery rec;
            rec.position = {st.epoch, st.last};
            const stream_position& since = session->since;
            if (since.epoch.empty()) {
                rec.recovered = true;
            } else if (since.epoch == st.epoch && since.offset <= st.last) {
                std::uint64_t next = since.offset + 1;
                for (const entry& e : entries)
                    if (e.offset == next && e.offset <= st.last) {
                        rec.messages.push_back(stamp(e.payload, st.epoch, e.offset));
                        ++next;
                    }
                rec.recovered = next == st.last + 1;
                if (!rec.recovered)
                    rec.messages.clear();
                recovered_messages += rec.messages.size();
            }
            finish(st, session, std::move(rec));
        }
        drain(channel, st);
    }

    /// Answers a session's read and forgets it.
    static void finish(stream& st, const std::shared_ptr<session_read>& session, recovery rec) {
        std::erase(st.sessions, session);
        answer(*session, std::move(rec));
    }

    /// Reads again for each session whose read failed; whether there was one.
    bool retry_sessions(const std::string& channel, stream& st) {
        bool asked = false;
        for (const auto& s : st.sessions)
            if (!s->in_flight) {
                read(channel, s);
                asked = true;
            }
        return asked;
    }

    void retry_later(const std::string& channel, stream& st) {
        if (st.retry_scheduled)
            return;
        st.retry_scheduled = true;
        auto timer = std::make_shared<net::steady_timer>(ioc, std::chrono::milliseconds(500));
        // (A weak reference: a stopped bus is not kept alive by its timers.)
        timer->async_wait([weak = weak_from_this(), channel, generation = st.generation,
                           timer](boost::system::error_code) {
            auto self = weak.lock();
            if (!self || self->stopped)
                return;
            auto it = self->streams.find(channel);
            if (it == self->streams.end() || it->second.generation != generation)
                return;
            stream& st = it->second;
            st.retry_scheduled = false;
            // The sessions' reads serve the catch-up too; without them, a read for the gap
            // unless one is in flight already.
            if (!self->retry_sessions(it->first, st) && st.reads == 0)
                self->read(it->first, nullptr);
        });
    }
};

redis_bus::redis_bus(net::io_context& ioc, redis_bus_options options, bus_options history)
    : impl_{std::make_shared<impl>(ioc, std::move(options), history)} {
    if (impl_->options.servers.empty())
        throw std::invalid_argument("redis_bus: no Redis server");
}

redis_bus::~redis_bus() {
    stop();
}

void redis_bus::start(bus_listener& to) {
    // Before the I/O threads run (the server starts the bus first), or on the bus's thread.
    impl_->start(to);
}

void redis_bus::stop() {
    if (impl_->ioc.get_executor().running_in_this_thread() || impl_->ioc.stopped()) {
        impl_->stop();
        return;
    }
    // On the bus's thread, and wait (bounded) until it has run there: no callback afterwards.
    auto stopped = std::make_shared<std::promise<void>>();
    auto done = stopped->get_future();
    net::post(impl_->ioc, [self = impl_, stopped] {
        self->stop();
        stopped->set_value();
    });
    if (done.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
        return; // the thread is gone or stuck: the destructor's turn comes after it
}

void redis_bus::publish(std::string_view channel, packet payload,
                        std::function<void(publish_result)> done) {
    net::post(impl_->ioc, [self = impl_, ch = std::string(channel), payload = std::move(payload),
                           done = std::move(done)]() mutable {
        self->publish(ch, std::move(payload), std::move(done));
    });
}

void redis_bus::open(std::string_view channel) {
    net::post(impl_->ioc, [self = impl_, ch = std::string(channel)] { self->open(ch); });
}

void redis_bus::close(std::string_view channel) {
    net::post(impl_->ioc, [self = impl_, ch = std::string(channel)] { self->close(ch); });
}

void redis_bus::recover(std::string_view channel, const stream_position& since,
                        std::function<void(recovery)> done) {
    net::post(impl_->ioc,
              [self = impl_, ch = std::string(channel), since, done = std::move(done)]() mutable {
                  self->recover(ch, since, std::move(done));
              });
}

redis_bus_stats redis_bus::stats() const noexcept {
    redis_bus_stats s;
    s.messages = impl_->messages;
    s.catch_ups = impl_->catch_ups;
    s.caught_up = impl_->caught_up;
    s.recoveries = impl_->recoveries;
    s.recovered = impl_->recovered_messages;
    s.publish_failures = impl_->publish_failures;
    s.servers = static_cast<unsigned>(impl_->options.servers.size());
    return s;
}

void redis_bus::write_metrics(std::string& out) const {
    struct server_stats {
        std::string label;
        redis::client_stats commands;
        redis::subscriber_stats pubsub;
    };
    std::vector<server_stats> servers;
    if (impl_->started.load(std::memory_order_acquire))
        for (std::size_t i = 0; i < impl_->links.size(); ++i)
            servers.push_back({server_label(impl_->options.servers[i]),
                               impl_->links[i].commands->stats(),
                               impl_->links[i].subscriber->stats()});

    struct per_server {
        std::string_view name, type, help;
        std::uint64_t (*value)(const server_stats&);
    };
    static constexpr per_server families[] = {
        {"megaphone_redis_up", "gauge",
         "1 when both connections to the Redis server (commands, pub/sub) are up.",
         [](const server_stats& s) -> std::uint64_t {
             return s.commands.connected && s.pubsub.connected;
         }},
        {"megaphone_redis_commands_total", "counter",
         "Commands sent to the Redis server on the command connection.",
         [](const server_stats& s) { return s.commands.commands; }},
        {"megaphone_redis_errors_total", "counter",
         "Commands to the Redis server that got no reply: not connected, queue full, timed out, "
         "connection lost.",
         [](const server_stats& s) { return s.commands.errors; }},
        {"megaphone_redis_error_replies_total", "counter",
         "Commands the Redis server answered with an error (NOSCRIPT included: a script loaded "
         "again, after a restart say).",
         [](const server_stats& s) { return s.commands.error_replies; }},
        {"megaphone_redis_timeouts_total", "counter",
         "Commands to the Redis server with no reply within the command timeout (the "
         "connection is then dropped).",
         [](const server_stats& s) { return s.commands.timeouts; }},
        {"megaphone_redis_reconnects_total", "counter",
         "Connections to the Redis server up again after a loss (commands and pub/sub "
         "connections).",
         [](const server_stats& s) { return s.commands.reconnects + s.pubsub.reconnects; }},
    };
    for (const per_server& f : families) {
        family(out, f.name, f.type, f.help);
        for (const server_stats& s : servers)
            sample(out, f.name, s.label, f.value(s));
    }

    const redis_bus_stats b = stats();
    const struct {
        std::string_view name, help;
        std::uint64_t value;
    } counters[] = {
        {"megaphone_bus_messages_total", "Pub/sub messages received from Redis for open channels.",
         b.messages},
        {"megaphone_bus_catch_ups_total",
         "History reads to fill a gap seen in a channel's pub/sub messages.", b.catch_ups},
        {"megaphone_bus_caught_up_messages_total",
         "Messages delivered from the history (after a gap or a reconnect), not live.",
         b.caught_up},
        {"megaphone_bus_recoveries_total",
         "Sessions' subscriptions resumed from a cursor (epoch, offset).", b.recoveries},
        {"megaphone_bus_recovered_messages_total", "Messages those sessions got from the history.",
         b.recovered},
        {"megaphone_bus_publish_failures_total",
         "Publishes the bus could not take (Redis unreachable, too slow, an error).",
         b.publish_failures},
    };
    for (const auto& c : counters) {
        family(out, c.name, "counter", c.help);
        sample(out, c.name, "", c.value);
    }
}

} // namespace megaphone
