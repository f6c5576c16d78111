#include "cluster/redis_client.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <poll.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <csignal>
#include <deque>
#include <limits>
#include <map>
#include <random>
#include <utility>

namespace megaphone::redis {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---------------------------------------------------------------------------------------------
// URLs

namespace {

template <class Int>
bool parse_number(std::string_view digits, Int& out) {
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos)
        return false;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
    return ec == std::errc{} && end == digits.data() + digits.size();
}

} // namespace

std::optional<endpoint> parse_url(std::string_view url) {
    constexpr std::string_view scheme = "redis://";
    if (!url.starts_with(scheme))
        return std::nullopt;
    url.remove_prefix(scheme.size());

    endpoint ep;
    if (url.starts_with('[')) {
        auto close = url.find(']');
        if (close == std::string_view::npos || close == 1)
            return std::nullopt;
        auto host = url.substr(1, close - 1);
        if (host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos)
            return std::nullopt;
        ep.host = host;
        url.remove_prefix(close + 1);
    } else {
        auto host = url.substr(0, url.find_first_of(":/"));
        constexpr std::string_view name_chars =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "0123456789.-_";
        if (host.empty() || host.find_first_not_of(name_chars) != std::string_view::npos)
            return std::nullopt;
        ep.host = host;
        url.remove_prefix(host.size());
    }
    if (url.starts_with(':')) {
        url.remove_prefix(1);
        auto digits = url.substr(0, url.find('/'));
        if (!parse_number(digits, ep.port) || ep.port == 0)
            return std::nullopt;
        url.remove_prefix(digits.size());
    }
    if (url.starts_with('/')) {
        url.remove_prefix(1);
        if (!parse_number(url, ep.db))
            return std::nullopt;
        url = {};
    }
    if (!url.empty())
        return std::nullopt;
    return ep;
}

// ---------------------------------------------------------------------------------------------
// Errors

namespace {

class category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "redis"; }
    std::string message(int e) const override {
        switch (static_cast<errc>(e)) {
        case errc::not_connected:
            return "not connected to redis";
        case errc::queue_full:
            return "too many redis commands in flight";
        case errc::timeout:
            return "redis command timed out";
        case errc::connection_lost:
            return "redis connection lost";
        case errc::bad_command:
            return "empty redis command";
        }
        return "unknown redis error";
    }
};

} // namespace

const std::error_category& category() noexcept {
    static const category_impl instance;
    return instance;
}

std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), category()};
}

// ---------------------------------------------------------------------------------------------
// The hiredis side: one context bound to an Asio descriptor.

namespace detail {

namespace {

reply convert(const redisReply& r) {
    reply out;
    switch (r.type) {
    case REDIS_REPLY_STRING:
        out.type = reply::kind::string;
        out.str.assign(r.str, r.len);
        break;
    case REDIS_REPLY_STATUS:
        out.type = reply::kind::status;
        out.str.assign(r.str, r.len);
        break;
    case REDIS_REPLY_ERROR:
        out.type = reply::kind::error;
        out.str.assign(r.str, r.len);
        break;
    case REDIS_REPLY_INTEGER:
        out.type = reply::kind::integer;
        out.integer = r.integer;
        break;
    case REDIS_REPLY_ARRAY:
        out.type = reply::kind::array;
        out.elements.reserve(r.elements);
        for (std::size_t i = 0; i < r.elements; ++i)
            out.elements.push_back(r.element[i] ? convert(*r.element[i]) : reply{});
        break;
    default: // REDIS_REPLY_NIL
        break;
    }
    return out;
}

} // namespace

/// What hiredis reported while it ran; delivered once it has returned, so that user code never
/// runs inside hiredis (where freeing the context, the usual reaction to an error, is deferred
/// and destroying our objects would pull the context from under it).
struct event {
    enum class kind : std::uint8_t { probe, command, pubsub };
    kind what = kind::command;
    std::error_code ec; // no reply (then `value` is nil)
    reply value;
    client::callback cb; // commands
};

struct pending_command {
    client::callback cb;
    steady::time_point sent;
    bool timed_out = false;
};

class core;

/// One redisAsyncContext and the descriptor that watches its socket. hiredis keeps a raw
/// pointer to the link (ev.data, privdata) while the context lives; Asio handlers keep the link
/// alive with a shared_ptr and do nothing once the context is gone (`ac` null): hiredis may free
/// the context inside redisAsyncHandleRead/Write, so `ac` is read again after every call into it.
struct link : std::enable_shared_from_this<link> {
    explicit link(asio::io_context& ioc)
        : fd{ioc} {}
    link(const link&) = delete;
    link& operator=(const link&) = delete;

    redisAsyncContext* ac = nullptr;
    asio::posix::stream_descriptor fd;
    std::weak_ptr<core> owner;
    bool want_read = false;
    bool want_write = false;
    bool reading = false; // an async_wait is pending
    bool writing = false;
    std::deque<pending_command> pending; // the client's commands, in the order hiredis sent them
    std::vector<event> events;
    steady::time_point last_read{};

    /// Whether bytes wait in the socket: then a late answer may be there, unread only because
    /// this thread was busy, and the timeouts wait for the read handler to run first.
    bool readable() const {
        if (!ac)
            return false;
        pollfd p{ac->c.fd, POLLIN, 0};
        return ::poll(&p, 1, 0) == 1;
    }

    void attach(redisAsyncContext* c);
    void arm_read();
    void arm_write();
    void on_ready(bool read, const boost::system::error_code& ec);
};

namespace {

link& link_of(void* p) {
    return *static_cast<link*>(p);
}

void hook_add_read(void* p) {
    auto& l = link_of(p);
    l.want_read = true;
    l.arm_read();
}
void hook_del_read(void* p) {
    link_of(p).want_read = false;
}
void hook_add_write(void* p) {
    auto& l = link_of(p);
    l.want_write = true;
    l.arm_write();
}
void hook_del_write(void* p) {
    link_of(p).want_write = false;
}

// hiredis is freeing the context and closes the socket itself (redisFree): release the
// descriptor (which deregisters it and aborts the pending waits) rather than close it, or the fd
// would be closed twice, the second time perhaps someone else's.
void hook_cleanup(void* p) {
    auto& l = link_of(p);
    l.ac = nullptr;
    l.want_read = l.want_write = false;
    if (l.fd.is_open())
        l.fd.release();
}

void on_probe_reply(redisAsyncContext*, void* r, void* priv) {
    event ev;
    ev.what = event::kind::probe;
    if (r)
        ev.value = convert(*static_cast<redisReply*>(r));
    else
        ev.ec = errc::connection_lost;
    link_of(priv).events.push_back(std::move(ev));
}

// hiredis calls each command's callback once, in the order the commands were sent: with the
// reply, or with null when the context is freed first.
void on_command_reply(redisAsyncContext*, void* r, void* priv) {
    auto& l = link_of(priv);
    if (l.pending.empty())
        return;
    pending_command p = std::move(l.pending.front());
    l.pending.pop_front();
    event ev;
    if (!r)
        ev.ec = p.timed_out ? errc::timeout : errc::connection_lost;
    else if (p.timed_out)
        return; // a late reply: the command has failed already
    else
        ev.value = convert(*static_cast<redisReply*>(r));
    ev.cb = std::move(p.cb);
    l.events.push_back(std::move(ev));
}

// Every subscribed channel shares this callback (hiredis keeps one per channel); it is called
// once per channel with null while the context is freed: nothing to report then.
void on_pubsub_reply(redisAsyncContext*, void* r, void* priv) {
    if (!r)
        return;
    event ev;
    ev.what = event::kind::pubsub;
    ev.value = convert(*static_cast<redisReply*>(r));
    link_of(priv).events.push_back(std::move(ev));
}

} // namespace

void link::attach(redisAsyncContext* c) {
    ac = c;
    c->ev.data = this;
    c->ev.addRead = hook_add_read;
    c->ev.delRead = hook_del_read;
    c->ev.addWrite = hook_add_write;
    c->ev.delWrite = hook_del_write;
    c->ev.cleanup = hook_cleanup;
}

void link::arm_read() {
    if (reading || !ac)
        return;
    reading = true;
    fd.async_wait(asio::posix::descriptor_base::wait_read,
                  [self = shared_from_this()](const boost::system::error_code& ec) {
                      self->on_ready(true, ec);
                  });
}

void link::arm_write() {
    if (writing || !ac)
        return;
    writing = true;
    fd.async_wait(asio::posix::descriptor_base::wait_write,
                  [self = shared_from_this()](const boost::system::error_code& ec) {
                      self->on_ready(false, ec);
                  });
}

// ---------------------------------------------------------------------------------------------
// Statistics: written on the io thread, read from any (stats(), for /metrics): relaxed atomics.

namespace {
using counter = std::atomic<std::uint64_t>;
void bump(counter& c) noexcept {
    c.fetch_add(1, std::memory_order_relaxed);
}
std::uint64_t value_of(const counter& c) noexcept {
    return c.load(std::memory_order_relaxed);
}
} // namespace

// ---------------------------------------------------------------------------------------------
// The connection cycle both objects share: connect, probe, up, lost, back off, again.

class core : public std::enable_shared_from_this<core> {
public:
    core(asio::io_context& ioc, endpoint where, milliseconds connect_timeout,
         milliseconds backoff_min, milliseconds backoff_max)
        : ioc_{ioc}
        , where_{std::move(where)}
        , connect_timeout_{connect_timeout}
        , backoff_min_{std::max(backoff_min, milliseconds{1})}
        , backoff_max_{std::max(backoff_max, backoff_min_)}
        , connect_timer_{ioc}
        , retry_timer_{ioc}
        , rng_{std::random_device{}()} {}
    virtual ~core() = default;

    void start() {
        if (started_ || stopped_)
            return;
        started_ = true;
        struct sigaction old {};
        if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL)
            std::signal(SIGPIPE, SIG_IGN);
        attempt();
    }

    void stop() {
        if (stopped_)
            return;
        stopped_ = true;
        up_ = false;
        up_seen_.store(false, std::memory_order_relaxed);
        connect_timer_.cancel();
        retry_timer_.cancel();
        on_stop();
        if (auto l = std::move(link_)) {
            l->owner.reset();
            if (l->ac)
                redisAsyncFree(l->ac); // runs our callbacks with null, then the cleanup hook
            l->events.clear();         // the user's callbacks, destroyed uncalled
            l->pending.clear();
        }
    }

    /// After hiredis read or wrote on `l`: deliver what it reported, notice a closed context.
    void after_io(link& l) {
        deliver(l);
        if (!stopped_ && link_.get() == &l && !l.ac)
            lost();
    }

    bool ready() const noexcept { return up_ && link_ && link_->ac; }

    std::function<void()> on_connected;
    std::function<void()> on_disconnected;

protected:
    /// Sends the first command, with on_probe_reply as its callback: its answer means up.
    virtual void send_probe(link& l) = 0;
    /// A command or pub/sub event; `current`: from the link in use (not one dropped meanwhile).
    virtual void handle(event& ev, bool current) = 0;
    virtual void link_up() = 0;
    virtual void link_down() = 0;
    virtual void on_stop() = 0;

    /// Closes the current link from our side (a stall), then handles it as lost.
    void drop() {
        if (!link_ || !link_->ac)
            return;
        redisAsyncFree(link_->ac);
        lost();
    }

    template <class T>
    std::shared_ptr<T> self() {
        return std::static_pointer_cast<T>(shared_from_this());
    }

    asio::io_context& ioc_;
    const endpoint where_;
    std::shared_ptr<link> link_;
    bool stopped_ = false;
    bool up_ = false;
    std::atomic<bool> up_seen_{false}; // up_, for other threads (stats())
    counter reconnects_{0};

private:
    void attempt() {
        if (stopped_)
            return;
        // A fresh context each try: hiredis cannot reconnect a context, and one that failed is
        // freed (by hiredis or by drop()) before we get here.
        redisAsyncContext* ac = redisAsyncConnect(where_.host.c_str(), where_.port);
        if (!ac)
            return retry_later();
        if (ac->err) {
            redisAsyncFree(ac);
            return retry_later();
        }
        auto l = std::make_shared<link>(ioc_);
        boost::system::error_code ec;
        l->fd.assign(ac->c.fd, ec);
        if (ec) {
            redisAsyncFree(ac);
            return retry_later();
        }
        l->owner = weak_from_this();
        l->attach(ac);
        link_ = l;
        send_probe(*l); // queued until the TCP connect completes; its write starts the connect

        connect_timer_.expires_after(connect_timeout_);
        connect_timer_.async_wait([self = shared_from_this(), w = std::weak_ptr<link>{l}](
                                      const boost::system::error_code& ec) {
            if (ec || self->stopped_ || self->up_ || self->link_ != w.lock())
                return;
            self->drop();
        });
    }

    void retry_later() {
        if (stopped_)
            return;
        // Exponential, with full jitter above the floor: nodes that lost the same Redis come
        // back spread out, not in step.
        failures_ = std::min(failures_ + 1, 20u);
        auto ceiling = std::min(backoff_max_, milliseconds{backoff_min_.count() << failures_});
        std::uniform_int_distribution<long long> pick{backoff_min_.count(), ceiling.count()};
        retry_timer_.expires_after(milliseconds{pick(rng_)});
        retry_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
            if (!ec && !self->stopped_)
                self->attempt();
        });
    }

    void deliver(link& l) {
        if (l.events.empty())
            return;
        auto events = std::move(l.events);
        l.events.clear();
        for (auto& ev : events) {
            if (stopped_)
                return;
            if (ev.what == event::kind::probe)
                probed(l, ev);
            else
                handle(ev, link_.get() == &l);
        }
    }

    void probed(link& l, const event& ev) {
        if (link_.get() != &l || up_)
            return;
        if (ev.ec || ev.value.is_error()) // SELECT of a database that does not exist, ...
            return drop();
        up_ = true;
        up_seen_.store(true, std::memory_order_relaxed);
        connect_timer_.cancel();
        failures_ = 0;
        if (connects_++ > 0)
            bump(reconnects_);
        link_up();
        if (!stopped_ && link_.get() == &l && on_connected) {
            auto f = on_connected; // the callback may replace itself
            f();
        }
    }

    /// The current link's context is gone: fail what was in flight, report, reconnect later.
    void lost() {
        auto l = std::move(link_);
        bool was_up = std::exchange(up_, false);
        up_seen_.store(false, std::memory_order_relaxed);
        connect_timer_.cancel();
        link_down();
        deliver(*l);
        if (stopped_)
            return;
        if (was_up && on_disconnected) {
            auto f = on_disconnected;
            f();
        }
        retry_later();
    }

    const milliseconds connect_timeout_;
    const milliseconds backoff_min_;
    const milliseconds backoff_max_;
    asio::steady_timer connect_timer_;
    asio::steady_timer retry_timer_;
    std::minstd_rand rng_;
    unsigned failures_ = 0; // attempts failed since the last connection up
    std::uint64_t connects_ = 0;
    bool started_ = false;
};

void link::on_ready(bool read, const boost::system::error_code& ec) {
    (read ? reading : writing) = false;
    if (!ac || ec == asio::error::operation_aborted)
        return;
    if (read) {
        if (!want_read)
            return;
        last_read = steady::now();
        redisAsyncHandleRead(ac); // may free the context (EOF, error)
    } else {
        if (!want_write)
            return;
        redisAsyncHandleWrite(ac); // completes the connect, or may free the context
    }
    if (ac && want_read)
        arm_read();
    if (ac && want_write)
        arm_write();
    if (auto o = owner.lock()) // keeps the owner alive while user callbacks run
        o->after_io(*this);
}

// ---------------------------------------------------------------------------------------------
// client

class client_impl final : public core {
public:
    client_impl(asio::io_context& ioc, endpoint where, client_options o)
        : core{ioc, std::move(where), o.connect_timeout, o.backoff_min, o.backoff_max}
        , options_{o}
        , timer_{ioc} {}

    void command(std::vector<std::string> argv, client::callback cb) {
        if (stopped_)
            return;
        if (argv.empty())
            return fail(std::move(cb), errc::bad_command);
        if (!ready())
            return fail(std::move(cb), errc::not_connected);
        if (link_->pending.size() >= options_.max_pending)
            return fail(std::move(cb), errc::queue_full);
        argv_.clear();
        lengths_.clear();
        for (const auto& a : argv) {
            argv_.push_back(a.data());
            lengths_.push_back(a.size());
        }
        // hiredis copies the formatted command into its output buffer: argv may go.
        if (redisAsyncCommandArgv(link_->ac, on_command_reply, link_.get(),
                                  static_cast<int>(argv_.size()), argv_.data(),
                                  lengths_.data()) != REDIS_OK)
            return fail(std::move(cb), errc::not_connected);
        link_->pending.push_back({std::move(cb), steady::now()});
        bump(commands_);
        arm_timer();
    }

    client_stats stats() const noexcept {
        return {value_of(commands_),      value_of(errors_),
                value_of(error_replies_), value_of(timeouts_),
                value_of(reconnects_),    up_seen_.load(std::memory_order_relaxed)};
    }

private:
    void send_probe(link& l) override {
        auto db = std::to_string(where_.db);
        const char* argv[] = {"SELECT", db.c_str()};
        const std::size_t lengths[] = {6, db.size()};
        redisAsyncCommandArgv(l.ac, on_probe_reply, &l, 2, argv, lengths);
    }

    void handle(event& ev, bool) override {
        if (ev.ec)
            bump(errors_);
        else if (ev.value.is_error())
            bump(error_replies_);
        if (ev.cb)
            ev.cb(ev.ec, std::move(ev.value));
    }

    void link_up() override {}
    void link_down() override {}
    void on_stop() override { timer_.cancel(); }

    void fail(client::callback cb, errc e) {
        bump(errors_);
        if (!cb)
            return;
        asio::post(ioc_, [self = self<client_impl>(), cb = std::move(cb), e] {
            if (!self->stopped_)
                cb(make_error_code(e), reply{});
        });
    }

    // One timer for all commands, on the oldest one: set when none is set, and when it fires
    // set again on whichever command is the oldest then (no cancel per reply).
    void arm_timer() {
        if (timer_armed_ || !link_ || link_->pending.empty())
            return;
        timer_armed_ = true;
        timer_.expires_at(link_->pending.front().sent + options_.command_timeout);
        timer_.async_wait([self = self<client_impl>()](const boost::system::error_code& ec) {
            self->timer_armed_ = false;
            if (!ec && !self->stopped_)
                self->check_timeouts();
        });
    }

    void check_timeouts() {
        if (!ready() || link_->pending.empty())
            return;
        auto& oldest = link_->pending.front();
        if (steady::now() - oldest.sent < options_.command_timeout)
            return arm_timer();
        if (link_->readable())
            return retry_check();
        // Stalled: every reply behind this one is late too. Drop the connection (the others
        // fail with connection_lost) and fail fast until a new one answers.
        oldest.timed_out = true;
        bump(timeouts_);
        drop();
    }

    void retry_check() {
        timer_armed_ = true;
        timer_.expires_after(milliseconds{1});
        timer_.async_wait([self = self<client_impl>()](const boost::system::error_code& ec) {
            self->timer_armed_ = false;
            if (!ec && !self->stopped_)
                self->check_timeouts();
        });
    }

    const client_options options_;
    asio::steady_timer timer_;
    bool timer_armed_ = false;
    std::vector<const char*> argv_; // reused: no allocation per command
    std::vector<std::size_t> lengths_;
    counter commands_{0};
    counter errors_{0};
    counter error_replies_{0};
    counter timeouts_{0};
};

// ---------------------------------------------------------------------------------------------
// subscriber

namespace {
// Subscribed from the start and re-subscribed as a ping: keeps the connection in subscribed mode
// whatever the user's channels (hiredis asserts on replies it does not expect otherwise), and
// its confirmations prove Redis answers.
constexpr std::string_view keepalive_channel = "__megaphone:redis:keepalive";
} // namespace

class subscriber_impl final : public core {
public:
    subscriber_impl(asio::io_context& ioc, endpoint where, subscriber_options o)
        : core{ioc, std::move(where), o.connect_timeout, o.backoff_min, o.backoff_max}
        , options_{o}
        , timer_{ioc} {
        options_.batch = std::max<std::size_t>(options_.batch, 1);
    }

    void subscribe(std::string_view name) {
        if (stopped_)
            return;
        auto it = channels_.find(name);
        if (it == channels_.end())
            it = channels_.emplace(std::string{name}, channel{}).first;
        if (it->second.wanted)
            return;
        it->second.wanted = true;
        wanted_.fetch_add(1, std::memory_order_relaxed);
        mark(name);
    }

    void unsubscribe(std::string_view name) {
        auto it = channels_.find(name);
        if (stopped_ || it == channels_.end() || !it->second.wanted)
            return;
        it->second.wanted = false;
        wanted_.fetch_sub(1, std::memory_order_relaxed);
        if (!it->second.sent && it->second.inflight == 0)
            channels_.erase(it);
        else
            mark(name);
    }

    bool wanted(std::string_view name) const {
        auto it = channels_.find(name);
        return it != channels_.end() && it->second.wanted;
    }

    subscriber_stats stats() const noexcept {
        return {value_of(messages_), value_of(reconnects_), wanted_.load(std::memory_order_relaxed),
                up_seen_.load(std::memory_order_relaxed)};
    }

    subscriber::message_handler on_message;
    subscriber::channel_handler on_subscribed;

private:
    struct channel {
        bool wanted = false;   // by the user
        bool sent = false;     // last command sent on this link: SUBSCRIBE
        unsigned inflight = 0; // (UN)SUBSCRIBEs sent, not yet confirmed
    };
    struct batch {
        steady::time_point sent;
        std::size_t unconfirmed;
    };

    void send_probe(link& l) override {
        const char* argv[] = {"PING"};
        const std::size_t lengths[] = {4};
        redisAsyncCommandArgv(l.ac, on_probe_reply, &l, 1, argv, lengths);
    }

    void link_up() override {
        std::vector<std::string_view> k{keepalive_channel};
        send("SUBSCRIBE", k);
        next_keepalive_ = steady::now() + options_.keepalive;
        dirty_.clear();
        for (const auto& [name, st] : channels_)
            dirty_.push_back(name);
        flush();
    }

    void link_down() override {
        timer_.cancel();
        timer_armed_ = false;
        outstanding_.clear();
        dirty_.clear();
        // A new link starts with nothing subscribed.
        for (auto it = channels_.begin(); it != channels_.end();) {
            if (!it->second.wanted) {
                it = channels_.erase(it);
            } else {
                it->second.sent = false;
                it->second.inflight = 0;
                ++it;
            }
        }
    }

    void on_stop() override {
        timer_.cancel();
        timer_armed_ = false;
    }

    void mark(std::string_view name) {
        if (!up_)
            return; // link_up sends every wanted channel
        dirty_.emplace_back(name);
        if (flush_posted_)
            return;
        flush_posted_ = true;
        asio::post(ioc_, [self = self<subscriber_impl>()] {
            self->flush_posted_ = false;
            if (!self->stopped_)
                self->flush();
        });
    }

    /// Sends what changed since the last flush: each channel whose wanted state differs from
    /// what was last sent for it.
    void flush() {
        if (!ready()) {
            dirty_.clear();
            return;
        }
        std::vector<std::string_view> subs, unsubs; // keys of channels_: stable
        for (const auto& name : dirty_) {
            auto it = channels_.find(name);
            if (it == channels_.end())
                continue;
            auto& st = it->second;
            if (st.wanted != st.sent) {
                st.sent = st.wanted;
                ++st.inflight;
                (st.wanted ? subs : unsubs).push_back(it->first);
            }
        }
        dirty_.clear();
        send("UNSUBSCRIBE", unsubs);
        send("SUBSCRIBE", subs);
    }

    void send(std::string_view verb, const std::vector<std::string_view>& names) {
        for (std::size_t at = 0; at < names.size() && ready(); at += options_.batch) {
            auto n = std::min(options_.batch, names.size() - at);
            argv_.assign(1, verb.data());
            lengths_.assign(1, verb.size());
            for (std::size_t i = at; i < at + n; ++i) {
                argv_.push_back(names[i].data());
                lengths_.push_back(names[i].size());
            }
            // hiredis registers on_pubsub_reply for each channel of a SUBSCRIBE and routes an
            // UNSUBSCRIBE's confirmations to it too.
            if (redisAsyncCommandArgv(link_->ac, on_pubsub_reply, link_.get(),
                                      static_cast<int>(argv_.size()), argv_.data(),
                                      lengths_.data()) != REDIS_OK)
                return drop();
            outstanding_.push_back({steady::now(), n});
            arm_timer();
        }
    }

    void handle(event& ev, bool current) override {
        const auto& e = ev.value.elements;
        if (!current || ev.value.type != reply::kind::array || e.size() < 3 ||
            e[0].type != reply::kind::string || e[1].type != reply::kind::string)
            return;
        const std::string& kind = e[0].str;
        const std::string& name = e[1].str;
        if (kind == "message") {
            auto it = channels_.find(name);
            if (it == channels_.end() || !it->second.wanted || !on_message)
                return;
            bump(messages_);
            on_message(name, e[2].str);
            return;
        }
        bool subscribed = kind == "subscribe";
        if (!subscribed && kind != "unsubscribe")
            return;
        // Redis confirms each channel of an (UN)SUBSCRIBE, in the order they were sent.
        if (!outstanding_.empty() && --outstanding_.front().unconfirmed == 0)
            outstanding_.pop_front();
        if (name == keepalive_channel)
            return;
        auto it = channels_.find(name);
        if (it == channels_.end())
            return;
        auto& st = it->second;
        if (st.inflight > 0)
            --st.inflight;
        if (st.inflight > 0)
            return;
        if (!st.wanted && !st.sent)
            channels_.erase(it);
        else if (subscribed && st.wanted && st.sent && on_subscribed)
            on_subscribed(name);
    }

    void arm_timer() {
        if (!ready())
            return;
        auto at = next_keepalive_;
        if (!outstanding_.empty())
            at = std::min(at, std::max(outstanding_.front().sent, link_->last_read) +
                                  options_.command_timeout);
        if (timer_armed_ && timer_.expiry() <= at)
            return;
        wake_at(at);
    }

    void wake_at(steady::time_point at) {
        timer_armed_ = true;
        timer_.expires_at(at); // aborts the wait set for later
        timer_.async_wait([self = self<subscriber_impl>()](const boost::system::error_code& ec) {
            if (ec == asio::error::operation_aborted)
                return; // re-armed earlier, or link down, or stopped: armed_ is already right
            self->timer_armed_ = false;
            if (!self->stopped_)
                self->tick();
        });
    }

    void tick() {
        if (!ready())
            return;
        auto now = steady::now();
        // Stalled: a confirmation is overdue and Redis has sent nothing for as long (messages
        // queued before a confirmation delay it without a stall). Reconnect, re-subscribe all.
        if (!outstanding_.empty() && now - outstanding_.front().sent >= options_.command_timeout &&
            now - link_->last_read >= options_.command_timeout) {
            if (!link_->readable())
                return drop();
            return wake_at(now + milliseconds{1}); // bytes wait: let the read handler run first
        }
        if (now >= next_keepalive_) {
            next_keepalive_ = now + options_.keepalive;
            std::vector<std::string_view> k{keepalive_channel};
            send("SUBSCRIBE", k);
        }
        arm_timer();
    }

    subscriber_options options_;
    asio::steady_timer timer_;
    bool timer_armed_ = false;
    steady::time_point next_keepalive_{};
    std::map<std::string, channel, std::less<>> channels_;
    std::vector<std::string> dirty_; // channels changed since the last flush (repeats allowed)
    bool flush_posted_ = false;
    std::deque<batch> outstanding_; // (UN)SUBSCRIBEs sent, in order, with confirmations due
    std::vector<const char*> argv_;
    std::vector<std::size_t> lengths_;
    std::atomic<std::size_t> wanted_{0};
    counter messages_{0};
};

} // namespace detail

// ---------------------------------------------------------------------------------------------
// Facades

client::client(boost::asio::io_context& ioc, endpoint where, client_options options)
    : impl_{std::make_shared<detail::client_impl>(ioc, std::move(where), options)} {}
client::~client() {
    impl_->stop();
}
void client::start() {
    impl_->start();
}
void client::stop() {
    impl_->stop();
}
void client::command(std::vector<std::string> argv, callback cb) {
    impl_->command(std::move(argv), std::move(cb));
}
void client::on_connected(std::function<void()> f) {
    impl_->on_connected = std::move(f);
}
void client::on_disconnected(std::function<void()> f) {
    impl_->on_disconnected = std::move(f);
}
bool client::connected() const noexcept {
    return impl_->ready();
}
client_stats client::stats() const noexcept {
    return impl_->stats();
}

subscriber::subscriber(boost::asio::io_context& ioc, endpoint where, subscriber_options options)
    : impl_{std::make_shared<detail::subscriber_impl>(ioc, std::move(where), options)} {}
subscriber::~subscriber() {
    impl_->stop();
}
void subscriber::start() {
    impl_->start();
}
void subscriber::stop() {
    impl_->stop();
}
void subscriber::subscribe(std::string_view channel) {
    impl_->subscribe(channel);
}
void subscriber::unsubscribe(std::string_view channel) {
    impl_->unsubscribe(channel);
}
bool subscriber::wanted(std::string_view channel) const {
    return impl_->wanted(channel);
}
void subscriber::on_message(message_handler f) {
    impl_->on_message = std::move(f);
}
void subscriber::on_subscribed(channel_handler f) {
    impl_->on_subscribed = std::move(f);
}
void subscriber::on_connected(std::function<void()> f) {
    impl_->on_connected = std::move(f);
}
void subscriber::on_disconnected(std::function<void()> f) {
    impl_->on_disconnected = std::move(f);
}
bool subscriber::connected() const noexcept {
    return impl_->ready();
}
subscriber_stats subscriber::stats() const noexcept {
    return impl_->stats();
}

} // namespace megaphone::redis
