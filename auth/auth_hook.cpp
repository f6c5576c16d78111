#include "auth/auth_hook.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

namespace megaphone::auth {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using steady = std::chrono::steady_clock;

std::string_view to_string(hook_action a) noexcept {
    return a == hook_action::publish ? "publish" : "subscribe";
}

namespace {

struct parsed_url {
    std::string host; ///< as resolved: without brackets
    std::string port;
    std::string authority; ///< the Host header
    std::string target;
};

parsed_url parse_url(std::string_view url) {
    constexpr std::string_view scheme = "http://";
    if (!url.starts_with(scheme))
        throw std::invalid_argument("--auth-url must be http://host[:port]/path");
    url.remove_prefix(scheme.size());
    const auto slash = url.find('/');
    parsed_url p;
    p.authority = std::string(url.substr(0, slash));
    p.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
    std::string_view a = p.authority;
    if (a.starts_with('[')) {
        const auto close = a.find(']');
        if (close == std::string_view::npos)
            throw std::invalid_argument("--auth-url: unclosed [ in the host");
        p.host = std::string(a.substr(1, close - 1));
        a.remove_prefix(close + 1);
        if (!a.empty() && !a.starts_with(':'))
            throw std::invalid_argument("--auth-url: junk after the host");
        p.port = a.empty() ? "80" : std::string(a.substr(1));
    } else {
        const auto colon = a.find(':');
        p.host = std::string(a.substr(0, colon));
        p.port = colon == std::string_view::npos ? "80" : std::string(a.substr(colon + 1));
    }
    if (p.host.empty() || p.port.empty() || p.port.size() > 5 ||
        p.port.find_first_not_of("0123456789") != std::string::npos ||
        p.target.find_first_of(" \r\n#") != std::string::npos)
        throw std::invalid_argument("--auth-url must be http://host[:port]/path");
    return p;
}

std::string key_of(const hook_question& q) {
    // Who is the user when there is one, else the session: "u:" / "s:" keep them apart.
    std::string key;
    key.reserve(q.channel.size() + q.user.size() + q.sid.size() + 6);
    key += q.action == hook_action::publish ? 'p' : 's';
    key += q.user.empty() ? "s:" : "u:";
    key += q.user.empty() ? q.sid : q.user;
    key += '\0';
    key += q.channel;
    return key;
}

} // namespace

struct auth_hook::impl {
    struct job {
        std::string key;
        std::string body;
    };
    class connection;

    explicit impl(hook_options o)
        : options{std::move(o)}
        , url{parse_url(options.url)}
        , work{net::make_work_guard(ioc)} {
        if (options.connections == 0)
            options.connections = 1;
    }

    hook_options options;
    parsed_url url;
    net::io_context ioc{1};
    net::executor_work_guard<net::io_context::executor_type> work;
    std::thread thread;

    std::mutex mutex; // cache and pending: ask() comes from any thread
    struct remembered {
        hook_verdict verdict;
        steady::time_point until;
    };
    std::unordered_map<std::string, remembered> cache;
    std::unordered_map<std::string, std::vector<answer>> pending;
    std::atomic<std::uint64_t> asked{0};

    // The hook's thread only.
    std::vector<std::shared_ptr<connection>> idle;
    std::deque<job> queue;
    std::size_t open = 0; // connections in use or idle

    void dispatch(job j);
    void answered(const std::string& key, hook_verdict v, std::string_view why);
    void release(std::shared_ptr<connection> c, bool reusable);
};

/// One keep-alive connection to the backend, carrying one question at a time.
class auth_hook::impl::connection : public std::enable_shared_from_this<connection> {
public:
    explicit connection(impl& hook)
        : hook_{hook}
        , stream_{hook.ioc}
        , resolver_{hook.ioc}
        , deadline_{hook.ioc} {}

    void run(job j) {
        job_ = std::move(j);
        ++generation_;
        retried_ = false;
        parser_.reset(); // (the last answer's: broken() asks whether this one has begun)
        deadline_.expires_after(hook_.options.timeout);
        deadline_.async_wait([self = shared_from_this(), g = generation_](beast::error_code ec) {
            if (!ec && g == self->generation_)
                self->fail("timeout");
        });
        if (connected_)
            return write();
        connect();
    }

private:
    void connect() {
        resolver_.async_resolve(
            hook_.url.host, hook_.url.port,
            [self = shared_from_this(), g = generation_](beast::error_code ec,
                                                         tcp::resolver::results_type found) {
                if (g != self->generation_)
                    return;
                if (ec)
                    return self->fail("resolve: " + ec.message());
                self->stream_.async_connect(found,
                                            [self, g](beast::error_code ec, const tcp::endpoint&) {
                                                if (g != self->generation_)
                                                    return;
                                                if (ec)
                                                    return self->fail("connect: " + ec.message());
                                                self->connected_ = true;
                                                self->write();
                                            });
            });
    }

    void write() {
        request_ = {http::verb::post, hook_.url.target, 11};
        request_.set(http::field::host, hook_.url.authority);
        request_.set(http::field::user_agent, "megaphone-auth-hook");
        request_.set(http::field::content_type, "application/json");
        request_.keep_alive(true);
        request_.body() = job_.body;
        request_.prepare_payload();
        http::async_write(
            stream_, request_,
            [self = shared_from_this(), g = generation_](beast::error_code ec, std::size_t) {
                if (g != self->generation_)
                    return;
                if (ec)
                    return self->broken("write: " + ec.message());
                self->read();
            });
    }

    void read() {
        parser_.emplace();
        parser_->body_limit(64 * 1024);
        http::async_read(
            stream_, buffer_, *parser_,
            [self = shared_from_this(), g = generation_](beast::error_code ec, std::size_t) {
                if (g != self->generation_)
                    return;
                if (ec)
                    return self->broken("read: " + ec.message());
                self->finish();
            });
    }

    /// A kept connection the backend had closed meanwhile (its keep-alive timeout): asked once
    /// more on a new connection, within the same deadline.
    void broken(const std::string& why) {
        if (reused_ && !retried_ && (!parser_ || !parser_->got_some())) {
            retried_ = true;
            reused_ = false;
            reset();
            return connect();
        }
        fail(why);
    }

    void finish() {
        const auto& res = parser_->get();
        const unsigned status = res.result_int();
        const bool keep = res.keep_alive();
        const hook_verdict v = status == 200   ? hook_verdict::allow
                               : status == 403 ? hook_verdict::deny
                                               : hook_verdict::failed;
        ++generation_; // the deadline's wait is stale now
        deadline_.cancel();
        const std::string key = std::move(job_.key);
        const std::string why = v == hook_verdict::failed ? "status " + std::to_string(status) : "";
        if (!keep)
            reset();
        reused_ = keep;
        auto self = shared_from_this();
        hook_.answered(key, v, why);
        hook_.release(std::move(self), keep);
    }

    void fail(const std::string& why) {
        ++generation_;
        deadline_.cancel();
        reset();
        const std::string key = std::move(job_.key);
        auto self = shared_from_this();
        hook_.answered(key, hook_verdict::failed, why);
        hook_.release(std::move(self), false);
    }

    void reset() {
        beast::error_code ignored;
        resolver_.cancel();
        stream_.socket().close(ignored);
        connected_ = false;
        buffer_.clear();
    }

    impl& hook_;
    beast::tcp_stream stream_;
    tcp::resolver resolver_;
    net::steady_timer deadline_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> request_;
    std::optional<http::response_parser<http::string_body>> parser_;
    job job_;
    std::uint64_t generation_ = 0; // handlers of an earlier question (or step) do nothing
    bool connected_ = false;
    bool reused_ = false; // the connection carried an earlier question
    bool retried_ = false;
};

void auth_hook::impl::dispatch(job j) {
    if (!idle.empty()) {
        auto c = std::move(idle.back());
        idle.pop_back();
        return c->run(std::move(j));
    }
    if (open < options.connections) {
        ++open;
        return std::make_shared<connection>(*this)->run(std::move(j));
    }
    queue.push_back(std::move(j));
}

void auth_hook::impl::release(std::shared_ptr<connection> c, bool reusable) {
    if (!reusable)
        --open;
    if (!queue.empty()) {
        job next = std::move(queue.front());
        queue.pop_front();
        if (reusable)
            return c->run(std::move(next));
        return dispatch(std::move(next));
    }
    if (reusable)
        idle.push_back(std::move(c));
}

void auth_hook::impl::answered(const std::string& key, hook_verdict v, std::string_view why) {
    if (v == hook_verdict::failed && options.on_failure)
        options.on_failure(why);
    // Everyone who asked meanwhile is answered in order, those who join during the answers
    // too; only then does the verdict enter the cache (see the header: ordering).
    for (;;) {
        std::vector<answer> waiting;
        {
            const std::lock_guard lock{mutex};
            auto it = pending.find(key);
            if (it == pending.end())
                return;
            if (it->second.empty()) {
                pending.erase(it);
                if (v == hook_verdict::failed || options.cache_for.count() <= 0)
                    return;
                if (cache.size() >= options.cache_entries) {
                    const auto now = steady::now();
                    std::erase_if(cache, [now](const auto& e) { return e.second.until <= now; });
                    if (cache.size() >= options.cache_entries)
                        cache.clear();
                }
                cache[key] = {v, steady::now() + options.cache_for};
                return;
            }
            waiting.swap(it->second);
        }
        for (answer& a : waiting)
            a(v);
    }
}

auth_hook::auth_hook(hook_options options)
    : impl_{std::make_shared<impl>(std::move(options))} {
    impl_->thread = std::thread([i = impl_.get()] { i->ioc.run(); });
}

auth_hook::~auth_hook() {
    impl_->work.reset();
    impl_->ioc.stop();
    if (impl_->thread.joinable())
        impl_->thread.join();
}

void auth_hook::ask(hook_question q, answer done) {
    std::string key = key_of(q);
    {
        std::unique_lock lock{impl_->mutex};
        if (auto it = impl_->cache.find(key); it != impl_->cache.end()) {
            if (it->second.until > steady::now()) {
                const hook_verdict v = it->second.verdict;
                lock.unlock(); // (`done` may ask again)
                return done(v);
            }
            impl_->cache.erase(it);
        }
        std::vector<answer>& waiting = impl_->pending[key];
        waiting.push_back(std::move(done));
        if (waiting.size() > 1)
            return; // asked already: answered with that question
    }
    impl_->asked.fetch_add(1, std::memory_order_relaxed);
    std::string body = nlohmann::json{{"sid", std::move(q.sid)},
                                      {"user", std::move(q.user)},
                                      {"channel", std::move(q.channel)},
                                      {"action", to_string(q.action)}}
                           .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    net::post(impl_->ioc,
              [i = impl_.get(), j = impl::job{std::move(key), std::move(body)}]() mutable {
                  i->dispatch(std::move(j));
              });
}

std::uint64_t auth_hook::asked() const noexcept {
    return impl_->asked.load(std::memory_order_relaxed);
}

const hook_options& auth_hook::options() const noexcept {
    return impl_->options;
}

} // namespace megaphone::auth
