#include "cluster/node_registry.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <unordered_map>
#include <vector>

namespace megaphone {

namespace net = boost::asio;

namespace {
/// Lookups remembered at once; beyond it the expired ones go, then all but those in flight.
constexpr std::size_t max_cached = 4096;
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
        // Only our own key goes, once Redis has answered (or failed within its timeout).
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

std::string node_registry::key(std::string_view id) {
    std::string k = "mp:node:";
    k += id;
    return k;
}

} // namespace megaphone
