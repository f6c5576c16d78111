#include "app/testing.hpp"

#include "app/log.hpp"
#include "app/session.hpp"
#include "transport/bosh_codec.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace megaphone::testing {

//--------------------------------------------------------------------------------------------------
// request

struct request::target final : exchange_target {
    explicit target(request& r)
        : owner{&r} {}
    void deliver(std::uint32_t, response r) override {
        owner->json_ = nlohmann::json::parse(r.body.view(), nullptr, false);
        owner->answer_ = std::move(r);
    }
    request* owner;
};

request::request(harness& h, std::string sid, request_id rid)
    : harness_{h}
    , sid_{std::move(sid)}
    , rid_{rid}
    , target_{std::make_shared<target>(*this)} {}

std::vector<std::string> request::stanzas() const {
    if (!answered())
        return {};
    auto body = parse_bosh_body(text());
    if (!std::holds_alternative<bosh_body>(body))
        return {};
    return std::get<bosh_body>(body).payloads;
}

nlohmann::json request::messages() const {
    if (!json_ || !json_->is_object())
        return nlohmann::json::array();
    return json_->value("messages", nlohmann::json::array());
}

void request::drop() {
    if (!target_ || answered())
        return;
    const exchange ex{target_, 1};
    // The connection is gone: later answers go nowhere, and the session is told.
    harness_.step(
        [sid = sid_, rid = rid_, ex](megaphone::engine& e) { e.connection_lost(sid, rid, ex); });
    target_.reset();
}

//--------------------------------------------------------------------------------------------------
// client

client::client(harness& h, const nlohmann::json& options, std::vector<nlohmann::json> messages)
    : harness_{h}
    , next_rid_{1000} {
    client_request req;
    req.rid = next_rid_++;
    if (options.contains("wait"))
        req.wait = options.at("wait").get<std::uint32_t>();
    if (options.contains("hold"))
        req.hold = options.at("hold").get<std::uint32_t>();
    if (options.contains("token"))
        req.token = options.at("token").get<std::string>();
    if (options.contains("headers"))
        for (const auto& [name, value] : options.at("headers").items())
            req.headers.emplace_back(name, value.get<std::string>());
    if (options.contains("recover"))
        for (const auto& [channel, cursor] : options.at("recover").items())
            req.recover.emplace_back(channel, decode_stream_position(cursor).value());
    for (auto& m : messages)
        req.messages.emplace_back(std::move(m));

    request& r = requests_.emplace_back(request{h, "", req.rid});
    r.target_->owner = &r; // it was built in a temporary
    const exchange ex{r.target_, 1};
    h.step([&h, req = std::move(req), ex](megaphone::engine& e) mutable {
        e.create(std::move(req), *h.observer_, json_codec::instance(), ex);
    });
    if (!r.answered() || r.status() != 200)
        throw std::runtime_error("testing::client: session creation failed");
    created_ = r.body();
    sid_ = created_.at("sid").get<std::string>();
    r.sid_ = sid_;
}

client::client(harness& h, const std::string& creation_body)
    : harness_{h} {
    auto decoded = decode_bosh_request(creation_body);
    if (!std::holds_alternative<bosh_request>(decoded))
        throw std::invalid_argument("testing::client: not a BOSH creation body");
    client_request req = to_client_request(std::move(std::get<bosh_request>(decoded)));
    next_rid_ = req.rid + 1;
    request& r = requests_.emplace_back(request{h, "", req.rid});
    r.target_->owner = &r; // it was built in a temporary
    const exchange ex{r.target_, 1};
    h.step([&h, req = std::move(req), ex](megaphone::engine& e) mutable {
        e.create(std::move(req), *h.observer_, bosh_codec::instance(), ex);
    });
    if (!r.answered() || r.status() != 200)
        throw std::runtime_error("testing::client: BOSH session creation failed");
    auto body = parse_bosh_body(r.text());
    const std::string* sid = std::holds_alternative<bosh_body>(body)
                                 ? std::get<bosh_body>(body).attribute("sid")
                                 : nullptr;
    // A creation the app refused (e.g. host-unknown) has no sid: the client is closed.
    sid_ = sid ? *sid : std::string();
    r.sid_ = sid_;
}

request& client::issue_xml(request_id rid, std::vector<std::string> stanzas,
                           const std::string& attributes) {
    std::string body = "<body rid='" + std::to_string(rid) + "' sid='" + sid_ + "' " + attributes +
                       " xmlns='http://jabber.org/protocol/httpbind'>";
    for (const auto& s : stanzas)
        body += s;
    body += "</body>";
    next_rid_ = std::max(next_rid_, rid + 1);
    request& r = requests_.emplace_back(request{harness_, sid_, rid});
    r.target_->owner = &r; // it was built in a temporary
    auto decoded = decode_bosh_request(body);
    if (!std::holds_alternative<bosh_request>(decoded))
        throw std::invalid_argument("testing::client: malformed BOSH body: " + body);
    client_request req = to_client_request(std::move(std::get<bosh_request>(decoded)));
    const exchange ex{r.target_, 1};
    harness_.step([req = std::move(req), ex](megaphone::engine& e) mutable {
        e.request(std::move(req), bosh_codec::instance(), ex);
    });
    return r;
}

request& client::send_xml(std::vector<std::string> stanzas, const std::string& attributes) {
    return issue_xml(next_rid_, std::move(stanzas), attributes);
}

request& client::restart() {
    return issue_xml(next_rid_, {}, "xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh'");
}

std::vector<std::string> client::stanzas() const {
    std::map<request_id, const request*> by_rid;
    for (const request& r : requests_)
        if (r.answered() && r.status() == 200 && !by_rid.contains(r.rid()))
            by_rid.emplace(r.rid(), &r);
    std::vector<std::string> out;
    for (const auto& [rid, r] : by_rid)
        for (auto& s : r->stanzas())
            out.push_back(std::move(s));
    return out;
}

request& client::issue(client_request&& req) {
    req.sid = sid_;
    next_rid_ = std::max(next_rid_, req.rid + 1);
    request& r = requests_.emplace_back(request{harness_, sid_, req.rid});
    r.target_->owner = &r; // it was built in a temporary
    const exchange ex{r.target_, 1};
    harness_.step([req = std::move(req), ex](megaphone::engine& e) mutable {
        e.request(std::move(req), json_codec::instance(), ex);
    });
    return r;
}

request& client::send(std::vector<nlohmann::json> messages) {
    return send_as(next_rid_, std::move(messages));
}

request& client::send_as(request_id rid, std::vector<nlohmann::json> messages) {
    client_request req;
    req.rid = rid;
    for (auto& m : messages)
        req.messages.emplace_back(std::move(m));
    return issue(std::move(req));
}

request& client::send_json(nlohmann::json body) {
    body["sid"] = sid_;
    if (!body.contains("rid"))
        body["rid"] = next_rid_;
    auto decoded = decode_json_request(body.dump());
    if (!std::holds_alternative<client_request>(decoded))
        throw std::invalid_argument("testing::client: malformed JSON request: " + body.dump());
    return issue(std::move(std::get<client_request>(decoded)));
}

request& client::resend(const request& original) {
    client_request req;
    req.rid = original.rid();
    return issue(std::move(req));
}

request& client::terminate() {
    client_request req;
    req.rid = next_rid_;
    req.terminate = true;
    return issue(std::move(req));
}

std::vector<nlohmann::json> client::received() const {
    // One answer per rid (a re-sent rid gets the same answer again), in rid order.
    std::map<request_id, const request*> by_rid;
    for (const request& r : requests_)
        if (r.answered() && r.status() == 200 && !by_rid.contains(r.rid()))
            by_rid.emplace(r.rid(), &r);
    std::vector<nlohmann::json> out;
    for (const auto& [rid, r] : by_rid)
        for (const auto& m : r->messages())
            out.push_back(m);
    return out;
}

std::vector<nlohmann::json> client::take() {
    auto all = received();
    std::vector<nlohmann::json> fresh(all.begin() + static_cast<std::ptrdiff_t>(taken_), all.end());
    taken_ = all.size();
    return fresh;
}

fsm_state client::state() const {
    const session* s = harness_.engine_.find(sid_);
    return s ? s->state() : fsm_state::closed;
}

std::size_t client::queued() const {
    const session* s = harness_.engine_.find(sid_);
    return s ? s->queued() : 0;
}

std::size_t client::held() const {
    const session* s = harness_.engine_.find(sid_);
    return s ? s->held() : 0;
}

//--------------------------------------------------------------------------------------------------
// harness

/// Forwards to the application under test and records how sessions close.
class harness::closing_observer final : public application {
public:
    closing_observer(application& app, harness& h)
        : app_{app}
        , h_{h} {}
    void on_open(session& s) override { app_.on_open(s); }
    void on_message(session& s, const message& m) override { app_.on_message(s, m); }
    void on_stream_restart(session& s) override { app_.on_stream_restart(s); }
    void on_close(session& s, close_reason why) override {
        h_.closed_.emplace_back(std::string(s.id()), why);
        app_.on_close(s, why);
    }

private:
    application& app_;
    harness& h_;
};

harness::harness(application& app, engine_config config, bus_options history)
    : observer_{std::make_unique<closing_observer>(app, *this)}
    , config_{std::move(config)}
    , engine_{config_, clock_, *this, 0}
    , bus_{history, [this] { return clock_.now(); }} {
    bus_.start(*this);
    engine_.use_history(this);
    // Quiet: a test checks what it expects; application errors are still printed.
    set_log_level(log_level::error);
}

harness::~harness() = default;

client& harness::connect_bosh(const std::string& creation_body) {
    clients_.push_back(client{*this, creation_body});
    return clients_.back();
}

client& harness::connect(const nlohmann::json& options, std::vector<nlohmann::json> messages) {
    clients_.push_back(client{*this, options, std::move(messages)});
    return clients_.back();
}

void harness::advance(duration d) {
    clock_.advance(d);
    step([](megaphone::engine& e) { e.expire_timers(); });
}

void harness::step(const std::function<void(megaphone::engine&)>& f) {
    f(engine_);
    settle();
}

void harness::settle() {
    if (settling_)
        return;
    settling_ = true;
    while (!pending_.empty()) {
        auto next = std::move(pending_.front());
        pending_.pop_front();
        next(engine_);
    }
    settling_ = false;
}

std::optional<close_reason> harness::close_reason_of(std::string_view sid) const {
    for (const auto& [id, why] : closed_)
        if (id == sid)
            return why;
    return std::nullopt;
}

void harness::push(std::string_view sid, packet p) {
    pending_.push_back([sid = std::string(sid), p](megaphone::engine& e) { e.push(sid, p); });
}

void harness::publish(std::string_view channel, packet p,
                      std::function<void(const publish_result&)> done) {
    pending_.push_back([this, ch = std::string(channel), p, done](megaphone::engine&) {
        std::function<void(publish_result)> told;
        if (done)
            told = [done](publish_result r) { done(r); };
        bus_.publish(ch, p, std::move(told));
    });
}

std::size_t harness::deliver(std::string_view channel, const packet& stamped, std::uint64_t) {
    pending_.push_back(
        [ch = std::string(channel), stamped](megaphone::engine& e) { e.publish(ch, stamped); });
    return engine_.subscribers(channel); // as the server counts: its subscribers now
}

void harness::recover(unsigned, std::string_view channel, const stream_position& since,
                      std::function<void(recovery)> done) {
    bus_.recover(channel, since, [this, done = std::move(done)](recovery r) mutable {
        pending_.push_back([done = std::move(done), r = std::move(r)](megaphone::engine&) mutable {
            done(std::move(r));
        });
    });
}

void harness::broadcast(packet p) {
    pending_.push_back([p](megaphone::engine& e) { e.broadcast(p); });
}

void harness::with_session(std::string_view sid, std::function<void(session&)> f) {
    pending_.push_back([sid = std::string(sid), f = std::move(f)](megaphone::engine& e) {
        e.with_session(sid, f);
    });
}

void harness::subscribe(std::string_view sid, std::string_view channel) {
    pending_.push_back([sid = std::string(sid), ch = std::string(channel)](megaphone::engine& e) {
        e.subscribe(sid, ch);
    });
}

void harness::unsubscribe(std::string_view sid, std::string_view channel) {
    pending_.push_back([sid = std::string(sid), ch = std::string(channel)](megaphone::engine& e) {
        e.unsubscribe(sid, ch);
    });
}

void harness::close(std::string_view sid) {
    pending_.push_back([sid = std::string(sid)](megaphone::engine& e) { e.close(sid); });
}

} // namespace megaphone::testing
