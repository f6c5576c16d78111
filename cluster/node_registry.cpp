#include "cluster/node_registry.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <charconv>
#include <optional>
#include <unordered_map>
#include <vector>

namespace megaphone {

namespace net = boost::asio;

namespace {
/// Lookups remembered at once; beyond it the expired ones go, then all but those in flight.
constexpr std::size_t max_cached = 4096;

std::optional<long long> integer_of(const std::string& text) {
    long long v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size())
        return std::nullopt;
    return v;
}

/// Redis's TIME answer (seconds, microseconds) in ms since the epoch.
std::optional<long long> time_ms(std::error_code ec, const redis::reply& r) {
    if (ec || r.type != redis::reply::kind::array || r.elements.size() != 2)
        return std::nullopt;
    const auto s = integer_of(r.elements[0].str);
    const auto us = integer_of(r.elements[1].str);
    if (!s || !us)
        return std::nullopt;
    return *s * 1000 + *us / 1000;
}

/// A score of ZRANGE ... WITHSCORES ("1712345678901", possibly "1.7e12" for odd writers).
std::optional<long long> score_of(const std::string& text) {
    if (auto v = integer_of(text))
        return v;
    try {
        return static_cast<long long>(std::stod(text));
    } catch (...) {
        return std::nullopt;
    }
}
} // namespace

struct node_registry::impl : std::enable_shared_from_this<impl> {
    using clock = std::chrono::steady_clock;

    struct entry {
        std::string address; // "" unknown
        clock::time_point expires{};
        bool pending = false;
        std::vector<std::function<void(std::string)>> waiters;
    };

    impl(net::io_context& c, redis::endpoint where, std::string id, node_registry_options o)
        : ioc{c}
        , options{o}
        , node{std::move(id)}
        , redis{c, std::move(where), o.client}
        , beat{c} {}

    net::io_context& ioc;
    node_registry_options options;
    std::string node;
    std::string address;
    redis::client redis;
    net::steady_timer beat;
    bool started = false;
    bool stopped = false;
    std::unordered_map<std::string, entry> cache;

    void start(std::string where) {
        address = std::move(where);
        started = true;
        std::weak_ptr<impl> weak = weak_from_this();
        // Announced as soon as Redis answers, again after every reconnect (a Redis restarted
        // empty knows the node again at once), and every heartbeat.
        redis.on_connected([weak] {
            if (auto self = weak.lock())
                self->announce();
        });
        redis.start();
        schedule();
    }

    void schedule() {
        beat.expires_after(options.heartbeat);
        beat.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
            auto self = weak.lock();
            if (ec || !self || self->stopped)
                return;
            self->announce();
            self->schedule();
        });
    }

    void announce() {
        if (stopped || !redis.connected())
            return;
        redis.command({"SET", key(node), address, "EX", std::to_string(options.ttl.count())},
                      [](std::error_code, redis::reply) {});
        // The heartbeat's time by Redis's clock (one clock for every node), then the ZADD.
        redis.command({"TIME"}, [weak = weak_from_this()](std::error_code ec, redis::reply r) {
            auto self = weak.lock();
            if (!self || self->stopped)
                return;
            if (const auto now = time_ms(ec, r))
                self->redis.command(
                    {"ZADD", std::string(nodes_key), std::to_string(*now), self->node},
                    [](std::error_code, redis::reply) {});
        });
    }

    void list(std::function<void(std::vector<cluster_node>)> done) {
        if (stopped || !started) {
            net::post(ioc, [done = std::move(done)] { done({}); });
            return;
        }
        // TIME and ZRANGE go out together (one connection: answered in order), then MGET.
        auto now = std::make_shared<std::optional<long long>>();
        redis.command({"TIME"},
                      [now](std::error_code ec, redis::reply r) { *now = time_ms(ec, r); });
        redis.command(
            {"ZRANGE", std::string(nodes_key), "0", "-1", "WITHSCORES"},
            [weak = weak_from_this(), now, done = std::move(done)](std::error_code ec,
                                                                   redis::reply r) mutable {
                auto self = weak.lock();
                if (!self || self->stopped)
                    return;
                if (ec || r.type != redis::reply::kind::array || !*now)
                    return done({});
                const long long ttl_ms =
                    std::chrono::duration_cast<std::chrono::milliseconds>(self->options.ttl)
                        .count();
                const long long oldest = **now - ttl_ms;
                std::vector<cluster_node> live;
                bool stale = false;
                for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) {
                    const auto score = score_of(r.elements[i + 1].str);
                    if (!score || *score < oldest) {
                        stale = true;
                        continue;
                    }
                    live.push_back({r.elements[i].str,
                                    {},
                                    std::chrono::milliseconds(std::max(0LL, **now - *score))});
                }
                if (stale) // nodes that died without stopping
                    self->redis.command({"ZREMRANGEBYSCORE", std::string(nodes_key), "-inf",
                                         "(" + std::to_string(oldest)},
                                        [](std::error_code, redis::reply) {});
                if (live.empty())
                    return done({});
                std::vector<std::string> mget{"MGET"};
                for (const auto& n : live)
                    mget.push_back(key(n.id));
                self->redis.command(
                    std::move(mget), [live = std::move(live), done = std::move(done)](
                                         std::error_code ec, redis::reply r) mutable {
                        if (ec || r.type != redis::reply::kind::array ||
                            r.elements.size() != live.size())
                            return done({});
                        std::vector<cluster_node> out;
                        for (std::size_t i = 0; i < live.size(); ++i)
                            if (r.elements[i].type == redis::reply::kind::string &&
                                !r.elements[i].str.empty()) {
                                live[i].address = std::move(r.elements[i].str);
                                out.push_back(std::move(live[i]));
                            }
                        std::sort(out.begin(), out.end(),
                                  [](const auto& a, const auto& b) { return a.id < b.id; });
                        done(std::move(out));
                    });
            });
    }

    void stop(std::function<void()> done) {
        if (stopped) {
            if (done)
                net::post(ioc, std::move(done));
            return;
        }
        stopped = true;
        beat.cancel();
        for (auto& [id, e] : cache)
            for (auto& w : e.waiters)
                net::post(ioc, [w = std::move(w)] { w(std::string()); });
        cache.clear();
        if (!started || !redis.connected()) {
            redis.stop();
            if (done)
                net::post(ioc, std::move(done));
            return;
        }
        // Only our own key (and member) goes, once Redis has answered (or failed within its
        // timeout): the DEL is answered after the ZREM (one connection, in order).
        redis.command({"ZREM", std::string(nodes_key), node}, [](std::error_code, redis::reply) {});
        redis.command({"DEL", key(node)}, [self = shared_from_this(),
                                           done = std::move(done)](std::error_code, redis::reply) {
            net::post(self->ioc, [self, done] {
                self->redis.stop();
                if (done)
                    done();
            });
        });
    }

    void lookup(std::string id, std::function<void(std::string)> done) {
        if (stopped || !started) {
            net::post(ioc, [done = std::move(done)] { done(std::string()); });
            return;
        }
        const auto now = clock::now();
        if (auto it = cache.find(id); it != cache.end()) {
            entry& e = it->second;
            if (e.pending) {
                e.waiters.push_back(std::move(done));
                return;
            }
            if (e.expires > now) {
                net::post(ioc, [done = std::move(done), a = e.address] { done(a); });
                return;
            }
        }
        if (cache.size() >= max_cached)
            trim(now);
        entry& e = cache[id];
        e.pending = true;
        e.waiters.push_back(std::move(done));
        redis.command(
            {"GET", key(id)}, [weak = weak_from_this(), id](std::error_code ec, redis::reply r) {
                auto self = weak.lock();
                if (!self || self->stopped)
                    return;
                auto it = self->cache.find(id);
                if (it == self->cache.end())
                    return;
                entry& found = it->second;
                found.pending = false;
                if (!ec && !r.is_error()) {
                    found.address = r.type == redis::reply::kind::string ? r.str : std::string();
                    // A miss is kept only briefly: a node that just started registers within a
                    // heartbeat, and its sessions must not get item-not-found for a whole cache
                    // period meanwhile.
                    const clock::duration keep = self->options.cache;
                    found.expires =
                        clock::now() +
                        (found.address.empty()
                             ? std::min<clock::duration>(keep, std::chrono::milliseconds(100))
                             : keep);
                }
                // Redis unreachable: the last address known (if any) stands, not kept as fresh (a
                // dead node's connection then fails: item-not-found all the same); asked again next
                // time.
                // Copies: a waiter may look up again, which may rehash the cache.
                const std::string address = found.address;
                auto waiters = std::move(found.waiters);
                found.waiters.clear();
                for (auto& w : waiters)
                    w(address);
            });
    }

    void trim(clock::time_point now) {
        std::erase_if(cache, [now](const auto& kv) {
            return !kv.second.pending && kv.second.expires <= now;
        });
        if (cache.size() >= max_cached)
            std::erase_if(cache, [](const auto& kv) { return !kv.second.pending; });
    }
};

node_registry::node_registry(net::io_context& ioc, redis::endpoint where, std::string node_id,
                             node_registry_options options)
    : impl_{std::make_shared<impl>(ioc, std::move(where), std::move(node_id), options)} {}

node_registry::~node_registry() {
    impl_->stopped = true;
    impl_->beat.cancel();
    impl_->redis.stop();
}

void node_registry::start(std::string address) {
    impl_->start(std::move(address));
}

void node_registry::stop(std::function<void()> done) {
    impl_->stop(std::move(done));
}

void node_registry::lookup(std::string_view id, std::function<void(std::string)> done) {
    impl_->lookup(std::string(id), std::move(done));
}

void node_registry::list(std::function<void(std::vector<cluster_node>)> done) {
    impl_->list(std::move(done));
}

std::string node_registry::key(std::string_view id) {
    std::string k = "mp:node:";
    k += id;
    return k;
}

} // namespace megaphone
