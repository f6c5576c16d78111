#include "app/session.hpp"

#include "app/access.hpp"
#include "app/engine.hpp"
#include "app/log.hpp"
#include "app/stream_sink.hpp"
#include "fsm/metrics.hpp"
#include "transport/bosh_codec.hpp"

#include <spdlog/logger.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace megaphone {

/// What a BOSH session keeps beyond a JSON one.
struct session::bosh_state {
    explicit bosh_state(std::shared_ptr<const bosh_request> creation)
        : host{creation->to.value_or("")}
        , lang{creation->lang.value_or("")}
        , legacy{creation->legacy()}
        , keys{creation->newkey}
        , creation{std::move(creation)} {
        if (this->creation->content)
            content_type = packet::from(bosh_content_type(this->creation->content));
    }

    std::string host;
    std::string lang;
    bool legacy;         // no `ver` at creation: errors use bare HTTP codes (§17.1)
    packet content_type; // the creation's `content` (§7.1); empty: text/xml
    bosh_key_sequence keys;
    std::shared_ptr<const bosh_request> creation;   // until the creation is answered
    std::optional<std::chrono::milliseconds> pause; // stretched inactivity (§10)
    bool answering_pause = false;                   // pause answers are not kept (§14.3)
};

struct session::rare_parts {
    std::unique_ptr<bosh_state> bosh;    // BOSH sessions only
    std::unique_ptr<stream_sink> stream; // from the session's first stream on
    // Who the client is: a token's claims, or (app_user_) only a subject the application gave
    // at creation (application::authorize), whose patterns are not used.
    std::unique_ptr<auth::token_claims> claims;
    std::optional<publish_bucket> publishes; // from the session's first publish on
    std::vector<early_request> early;        // requests that came before their turn
};

session::session(engine& owner, application& app, const session_codec& codec, std::string_view sid,
                 const session_settings& settings, request_id first_rid)
    : engine_{owner}
    , app_{app}
    , codec_{codec}
    , settings_{settings}
    , fsm_{*this, session_params{settings.hold, settings.hold == 0 || settings.wait.count() == 0,
                                 settings.max_queue}}
    , die_timer_{&session::on_die_timer, this}
    , wait_timer_{&session::on_wait_timer, this}
    , next_rid_{first_rid}
    , creation_rid_{first_rid}
    , last_answered_{first_rid} {
    if (sid.size() > sid_.size())
        throw std::length_error("session id too long");
    std::copy(sid.begin(), sid.end(), sid_.begin());
    sid_len_ = static_cast<std::uint8_t>(sid.size());
}

session::~session() = default;

session::rare_parts& session::rare() {
    if (!rare_)
        rare_ = std::make_unique<rare_parts>();
    return *rare_;
}

void session::identify(std::unique_ptr<auth::token_claims> claims, std::string user) {
    if (claims)
        rare().claims = std::move(claims);
    if (user.empty())
        return;
    std::unique_ptr<auth::token_claims>& held = rare().claims;
    if (!held) {
        held = std::make_unique<auth::token_claims>();
        app_user_ = true;
    }
    held->subject = std::move(user);
}

session::bosh_state* session::bosh() const noexcept {
    return rare_ ? rare_->bosh.get() : nullptr;
}

stream_sink* session::sink() const noexcept {
    return rare_ ? rare_->stream.get() : nullptr;
}

auth::token_claims* session::claims() const noexcept {
    return rare_ ? rare_->claims.get() : nullptr;
}

broker& session::broker() noexcept {
    return engine_.broker();
}

std::string_view session::user() const noexcept {
    return claims() ? std::string_view(claims()->subject) : std::string_view{};
}

bool session::token_allows_subscribe(std::string_view channel) const noexcept {
    if (claims() && !app_user_)
        return claims()->channels.allows(channel);
    const session_rules& rules = rules_or_defaults(engine_.config().rules);
    return rules.private_prefix.empty() || !channel.starts_with(rules.private_prefix);
}

bool session::token_allows_publish(std::string_view channel) const noexcept {
    if (claims() && !app_user_)
        return claims()->publish.allows(channel);
    return rules_or_defaults(engine_.config().rules).client_publish.allows(channel);
}

bool session::take_publish_token() {
    const session_rules& rules = rules_or_defaults(engine_.config().rules);
    if (rules.publish_burst == 0)
        return true;
    const time_point now = engine_.clock().now();
    const double burst = rules.publish_burst;
    std::optional<publish_bucket>& bucket = rare().publishes;
    if (!bucket)
        bucket = publish_bucket{burst, now};
    publish_bucket& b = *bucket;
    const double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(burst, b.tokens + elapsed * rules.publish_rate);
    b.last = now;
    if (b.tokens < 1) {
        count_refusal(refusal::publish_rate);
        return false;
    }
    b.tokens -= 1;
    return true;
}

bool session::token_checks_pass(const client_request& req, const exchange& ex) {
    const session_rules& rules = rules_or_defaults(engine_.config().rules);
    if (!req.token.empty()) {
        // A refresh: a valid token of the same user (or a first one) replaces the claims.
        auto outcome = check_token(rules, req.token, false);
        if (!outcome.refused && (!claims() || outcome.claims->subject == claims()->subject)) {
            rare().claims = std::move(outcome.claims);
            app_user_ = false;
            return true;
        }
    } else if (!claims() || !claims()->expires || rules.now() < *claims()->expires + rules.leeway) {
        return true;
    }
    count_refusal(refusal::unauthorized);
    fail(protocol_error::not_authorized, ex);
    return false;
}

std::string_view session::host() const noexcept {
    // Both arms string_view: a std::string arm would make the result point into a temporary.
    return bosh() ? std::string_view(bosh()->host) : std::string_view();
}
std::string_view session::lang() const noexcept {
    return bosh() ? std::string_view(bosh()->lang) : std::string_view();
}

void session::reply(const exchange& ex, packet body, unsigned status) const {
    ex.reply({status, codec_.kind(), std::move(body), bosh() ? bosh()->content_type : packet{}});
}

//--------------------------------------------------------------------------------------------------
// Application-facing

void session::push(packet p) {
    if (!closed_)
        fsm_.process(packet_pushed{std::move(p)});
}

void session::push(const nlohmann::json& value) {
    push(codec_.encode(value));
}

void session::subscribe(std::string_view channel) {
    if (!closed_ && !subscribed(channel))
        engine_.join(*this, channel);
}

void session::subscribe(std::string_view channel, const stream_position& since) {
    if (closed_)
        return;
    if (since.epoch.empty() && subscribed(channel)) {
        // Subscribed already, and only the position is asked for (megaphone.js sends this while
        // its creation's `recover` has subscribed the session): leaving and joining again would
        // lose what was published in between, to a member the publish counted.
        engine_.tell_position(*this, channel);
        return;
    }
    unsubscribe(channel);
    engine_.resume(*this, channel, since);
}

void session::recovered(std::string_view channel, recovery r) {
    call_app([&] { app_.on_recovered(*this, channel, r); });
    for (packet& p : r.messages)
        push(std::move(p));
}

void session::unsubscribe(std::string_view channel) {
    for (std::size_t i = 0; i < subscriptions_.size(); ++i)
        if (subscriptions_[i].ch->name() == channel)
            return engine_.leave(*this, i);
}

bool session::subscribed(std::string_view channel) const noexcept {
    return std::any_of(subscriptions_.begin(), subscriptions_.end(),
                       [channel](const subscription& s) { return s.ch->name() == channel; });
}

void session::close(close_reason why) {
    end(why);
}

void session::end(close_reason why) {
    if (closed_)
        return;
    close_reason_ = why; // the held requests' closing answers say why
    fsm_.process(terminate_session{why});
}

//--------------------------------------------------------------------------------------------------
// Requests

void session::open(client_request&& creation, exchange ex) {
    if (creation.bosh)
        rare().bosh = std::make_unique<bosh_state>(creation.bosh);
    created_ = engine_.clock().now();
    peer_ = creation.peer;
    fsm_.start(); // arms the die timer
    next_rid_ = creation.rid + 1;
    call_app([&] { app_.on_open(*this); });
    for (const auto& cursor : creation.recover) {
        if (closed_)
            break;
        call_app([&] { app_.on_recover(*this, cursor.first, cursor.second); });
    }
    deliver(creation.messages);
    if (closed_)
        return reply(ex, codec_.closing(creation.rid, close_reason_));
    // The creation request is answered at once, with whatever was pushed on open.
    outstanding_.push_back({creation.rid, std::move(ex)});
    fsm_.process(request_arrived{creation.rid, /*answer_now=*/true});
}

void session::on_request(client_request&& req, exchange ex) {
    if (closed_)
        return fail(protocol_error::item_not_found, ex);
    if (req.ack)
        apply_ack(*req.ack);
    const request_id rid = req.rid;

    if (rid == next_rid_) {
        process(std::move(req), std::move(ex));
        return drain_early();
    }

    if (rid > next_rid_) {
        // Early: within the window it waits for the gap to fill; beyond it the session ends.
        if (rid - next_rid_ >= requests()) {
            count_refusal(refusal::rid_out_of_window);
            return fail(protocol_error::item_not_found, ex);
        }
        std::vector<early_request>& early = rare().early;
        for (early_request& e : early)
            if (e.request.rid == rid) {
                // A second copy of a waiting early request: the newest carries the answer.
                reply(e.ex, codec_.replaced(rid));
                e.ex = std::move(ex);
                return;
            }
        // One more than `requests` is allowed when it is a terminate or a pause (§11).
        const bool pause = req.bosh && req.bosh->pause;
        if (outstanding_.size() + early.size() >= requests() && !req.terminate && !pause) {
            count_refusal(refusal::too_many_requests);
            return fail(protocol_error::policy_violation, ex);
        }
        early.push_back({std::move(req), std::move(ex)});
        return;
    }

    // A repeat of a processed rid: answered before, held now, or lost with its connection.
    for (const cached_answer& c : cache_)
        if (c.rid == rid)
            return reply(ex, c.body);
    if (outstanding* o = find_outstanding(rid)) {
        // The client gave up on the held copy (a proxy cut it): the new copy takes its place.
        reply(o->ex, codec_.replaced(rid));
        o->ex = std::move(ex);
        return;
    }
    if (next_rid_ - rid <= requests()) {
        // Its held copy lost its connection and was forgotten. If a later rid has been answered
        // meanwhile, this one may not carry data any more (the client reads answers in rid
        // order: data pushed now would come before older data in the later answer): it is
        // answered empty at once. Otherwise it is held again, as if new. Its messages were
        // delivered the first time and are not delivered twice.
        if (last_answered_ > rid) {
            const packet body = codec_.data(rid, {});
            remember(rid, body);
            return reply(ex, body);
        }
        outstanding_.push_back({rid, std::move(ex)});
        fsm_.process(request_arrived{rid, false, expects_stream(req)});
        return;
    }
    count_refusal(refusal::rid_out_of_window);
    fail(protocol_error::item_not_found, ex);
}

void session::process(client_request&& req, exchange ex) {
    next_rid_ = req.rid + 1;
    if (req.bosh && bosh() && !bosh_checks_pass(req, ex))
        return;
    if (!token_checks_pass(req, ex))
        return;

    // A polling session may not poll faster than `polling` with empty requests (BOSH §12).
    if (fsm_.params().polling && req.messages.empty() && !req.terminate) {
        const time_point now = engine_.clock().now();
        if (last_empty_poll_ != time_point{} && now - last_empty_poll_ < settings_.polling) {
            count_refusal(refusal::polling_too_fast);
            return fail(protocol_error::policy_violation, ex);
        }
        last_empty_poll_ = now;
    } else {
        last_empty_poll_ = {};
    }

    // A client back from a stream: what the stream never delivered goes first, before what the
    // messages below may push.
    if (req.stream_ack && !rewind_stream(req, ex))
        return;

    // XEP-0206: a stream restart comes before the payloads (it normally has none).
    if (req.bosh && req.bosh->restart)
        call_app([&] { app_.on_stream_restart(*this); });
    deliver(req.messages);
    if (closed_)
        return reply(ex, codec_.closing(req.rid, close_reason_));
    if (req.terminate) {
        end(close_reason::client_terminate);
        return reply(ex, codec_.terminated(req.rid));
    }
    if (req.bosh && req.bosh->pause && bosh())
        return pause(req, std::move(ex));
    // A BOSH client whose ack shows a lost answer is told at once (§9.2): it re-sends that rid.
    if (req.bosh && req.ack && bosh()) {
        for (const cached_answer& c : cache_)
            if (c.rid == *req.ack + 1 && c.rid < req.rid &&
                engine_.clock().now() - c.at >= engine_.config().report_after) {
                const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
                    engine_.clock().now() - c.at);
                return reply(ex, bosh_codec::report_answer(c.rid, age));
            }
    }
    outstanding_.push_back({req.rid, std::move(ex)});
    fsm_.process(request_arrived{req.rid, false, expects_stream(req)});
}

bool session::expects_stream(const client_request& req) const noexcept {
    // Asked for, or sent before the attached stream opened (the rid fence): either way what is
    // queued is the stream's, and the answer must carry nothing newer than what it wrote.
    return req.streaming || (sink() && req.rid <= sink()->fence());
}

bool session::rewind_stream(const client_request& req, const exchange& ex) {
    if (bosh())
        return true; // BOSH sessions have no streams
    if (!sink())
        rare().stream = std::make_unique<stream_sink>(settings_.max_queue);
    // A request sent before the latest stream opened knows less than that stream's position.
    if (req.rid <= sink()->fence())
        return true;
    // A client that keeps its stream only acknowledges what it received: the window shrinks.
    if (req.streaming) {
        sink()->acknowledge(*req.stream_ack);
        return true;
    }
    auto back = sink()->rewind(*req.stream_ack, req.rid);
    if (!back) {
        // As for a stream's Last-Event-ID: a position the window cannot serve exactly ends the
        // session; the client starts a new one and recovers its channels from their history.
        count_refusal(refusal::rid_out_of_window);
        fail(protocol_error::item_not_found, ex);
        return false;
    }
    fsm_.process(stream_rewound{std::move(*back)});
    return true;
}

bool session::bosh_checks_pass(const client_request& req, const exchange& ex) {
    // The next request restores the normal inactivity after a pause (§10).
    bosh()->pause.reset();
    // Key sequencing (§15): a wrong or missing key ends the session before anything else.
    if (bosh()->keys.accept(*req.bosh) != bosh_key_sequence::verdict::accepted) {
        count_refusal(refusal::bad_key);
        fail(protocol_error::item_not_found, ex);
        return false;
    }
    return true;
}

void session::pause(const client_request& req, exchange ex) {
    // §10: answer every held request at once, answer the pause itself with no payload, and let
    // the session idle for up to `pause` seconds (at most maxpause).
    const auto asked = std::chrono::milliseconds(std::chrono::seconds(*req.bosh->pause));
    bosh()->pause = std::min(asked, engine_.config().maxpause);
    if (fsm_.state() == fsm_state::have_packet) {
        // The pause answer carries no payload (§10): queued data waits for the next request,
        // and the die timer, which runs in have_packet, restarts stretched to the pause.
        reply(ex, codec_.data(req.rid, {}));
        return arm_die_timer();
    }
    const std::vector<request_id> held(fsm_.held().begin(), fsm_.held().end());
    for (request_id rid : held) {
        if (outstanding* o = find_outstanding(rid))
            o->deadline = time_point::max();
        fsm_.process(wait_expired{rid}); // answered empty, as when its wait runs out
    }
    rearm_wait_timer();
    // Nothing is queued now (have_request and have_packet exclude each other): the pause is
    // answered empty, and that answer is not kept (§14.3).
    bosh()->answering_pause = true;
    outstanding_.push_back({req.rid, std::move(ex)});
    fsm_.process(request_arrived{req.rid, /*answer_now=*/true});
    bosh()->answering_pause = false;
}

void session::deliver(const std::vector<message>& messages) {
    for (const message& m : messages) {
        if (closed_)
            break;
        if (metrics_block* mb = current_metrics)
            mb->messages_in.add();
        call_app([&] { app_.on_message(*this, m); });
    }
}

template <class F>
void session::call_app(F&& f) {
    // Application code that throws ends its own session, never the thread it runs on.
    try {
        f();
    } catch (const std::exception& e) {
        logger().error("session {}: application error: {}", std::string_view(sid_.data(), sid_len_),
                       e.what());
        end(close_reason::internal_error);
    } catch (...) {
        logger().error("session {}: application error", std::string_view(sid_.data(), sid_len_));
        end(close_reason::internal_error);
    }
}

void session::drain_early() {
    // Process the waiting early requests whose turn has come, in rid order. (rare_, once made,
    // lives as long as the session: process() may come back here.)
    if (!rare_ || rare_->early.empty())
        return;
    std::vector<early_request>& early = rare_->early;
    for (bool progressed = true; progressed && !closed_;) {
        progressed = false;
        for (std::size_t i = 0; i < early.size(); ++i) {
            if (early[i].request.rid != next_rid_)
                continue;
            early_request e = std::move(early[i]);
            early.erase(early.begin() + static_cast<std::ptrdiff_t>(i));
            process(std::move(e.request), std::move(e.ex));
            progressed = true;
            break;
        }
    }
}

void session::attach_stream(const stream_transport& transport, std::optional<std::uint64_t> last_id,
                            std::optional<request_id> fence, exchange ex) {
    if (closed_)
        return ex.reply(transport.refusal());
    if (!sink())
        rare().stream = std::make_unique<stream_sink>(settings_.max_queue);
    switch (sink()->attach(transport, last_id, fence, ex)) {
    case stream_sink::attach_result::attached:
        return fsm_.process(stream_opened{});
    case stream_sink::attach_result::stale:
        // Its client gave it up before it arrived and long-polls: the session goes on.
        return ex.reply(transport.refusal());
    case stream_sink::attach_result::unservable:
        break;
    }
    // The client's position is out of the replay window: it cannot go on exactly. Like a rid
    // out of the window, the session ends; its client starts a new one and recovers.
    count_refusal(refusal::rid_out_of_window);
    end(close_reason::item_not_found);
    ex.reply(transport.refusal());
}

void session::on_stream_written(const exchange& ex) {
    if (sink() && sink()->is(ex))
        fsm_.process(stream_written{});
}

void session::on_connection_lost(request_id rid, const exchange& ex) {
    if (rid == stream_sink_id) {
        // Only the attached stream counts: a replaced one's loss is no news.
        if (sink() && sink()->is(ex)) {
            sink()->detach();
            fsm_.process(connection_closed{stream_sink_id});
        }
        return;
    }
    // Only the copy that is still held counts: a replaced copy's loss is no news.
    outstanding* o = find_outstanding(rid);
    if (!o || !o->ex.same_as(ex))
        return;
    fsm_.process(connection_closed{rid});
    // The machine forgot it: so does the session, and a re-sent copy will be held as new.
    const auto held = fsm_.held();
    if (std::find(held.begin(), held.end(), rid) == held.end())
        outstanding_.erase(std::remove_if(outstanding_.begin(), outstanding_.end(),
                                          [rid](const outstanding& x) { return x.rid == rid; }),
                           outstanding_.end());
}

void session::fail(protocol_error e, const exchange& ex) {
    // Protocol errors inside a session end it (BOSH §14.2, §11), then the request is answered.
    switch (e) {
    case protocol_error::item_not_found:
        end(close_reason::item_not_found);
        break;
    case protocol_error::policy_violation:
        end(close_reason::policy_violation);
        break;
    case protocol_error::bad_request:
        end(close_reason::bad_request);
        break;
    case protocol_error::not_authorized:
        end(close_reason::not_authorized);
        break;
    case protocol_error::too_large:
    case protocol_error::system_shutdown:
    case protocol_error::rate_limited:
        break;
    }
    response r = codec_.error_response(e, bosh() && bosh()->legacy);
    if (bosh())
        r.content_type = bosh()->content_type;
    ex.reply(std::move(r));
}

session::outstanding* session::find_outstanding(request_id rid) {
    for (outstanding& o : outstanding_)
        if (o.rid == rid)
            return &o;
    return nullptr;
}

void session::remember(request_id rid, const packet& body) {
    cache_.push_back({rid, body, engine_.clock().now()});
    // Without acks keep the last `requests` answers; with acks everything not yet acknowledged
    // (apply_ack drops the rest), bounded all the same.
    const std::size_t keep = uses_ack_ ? 64 : requests();
    while (cache_.size() > keep)
        cache_.erase(cache_.begin());
}

void session::apply_ack(request_id ack) {
    uses_ack_ = true;
    cache_.erase(std::remove_if(cache_.begin(), cache_.end(),
                                [ack](const cached_answer& c) { return c.rid <= ack; }),
                 cache_.end());
}

//--------------------------------------------------------------------------------------------------
// Effects the machine asks for

void session::respond(request_id id, std::vector<packet> packets, answer_kind kind) {
    if (id == stream_sink_id) {
        // The streaming sink: one write. Its end (closing) is written by session_closed, which
        // follows at once and knows why the session ended.
        if (kind == answer_kind::data) {
            if (metrics_block* mb = current_metrics)
                mb->messages_out.add(packets.size());
            sink()->write(std::move(packets));
        }
        return;
    }
    auto it = std::find_if(outstanding_.begin(), outstanding_.end(),
                           [id](const outstanding& o) { return o.rid == id; });
    if (it == outstanding_.end())
        return; // cannot happen: the machine answers only what it holds or was just given
    exchange ex = std::move(it->ex);
    outstanding_.erase(it);

    if (kind == answer_kind::closing) {
        // Legacy BOSH clients (no `ver`) learn of an error end by a bare HTTP code (§17.1).
        if (bosh() && bosh()->legacy)
            if (auto status = bosh_legacy_status(condition(close_reason_)))
                return reply(ex, packet::from(""), *status);
        return reply(ex, codec_.closing(id, close_reason_));
    }

    std::int64_t pushed_at = 0; // the oldest message's push time, for the latency histogram
    for (const packet& p : packets)
        if (pushed_at == 0 || p.born_ns() < pushed_at)
            pushed_at = p.born_ns();
    if (metrics_block* mb = current_metrics)
        mb->messages_out.add(packets.size());

    packet body;
    if (id == creation_rid_) {
        const session_info info{this->id(), settings_.wait,       settings_.hold,
                                requests(), settings_.inactivity, settings_.polling};
        if (bosh() && bosh()->creation) {
            auto terms = bosh_creation::answer_to(*bosh()->creation, info);
            terms.maxpause =
                std::chrono::duration_cast<std::chrono::seconds>(engine_.config().maxpause);
            terms.ack.reset(); // we do not send acks (§9.1 is optional): never promise them
            body = bosh_codec::creation_answer(terms, packets);
            bosh()->creation.reset();
        } else {
            body = codec_.created(info, id, packets);
        }
    } else {
        body = codec_.data(id, packets);
    }
    last_answered_ = std::max(last_answered_, id);
    // Kept for a client that lost this answer and sends the rid again.
    if (!(bosh() && bosh()->answering_pause))
        remember(id, body);
    ex.reply(
        {200, codec_.kind(), std::move(body), bosh() ? bosh()->content_type : packet{}, pushed_at});
}

void session::arm_wait_timer(request_id id) {
    if (outstanding* o = find_outstanding(id)) {
        o->deadline = engine_.clock().now() + settings_.wait;
        rearm_wait_timer();
    }
}

void session::cancel_wait_timer(request_id id) {
    if (outstanding* o = find_outstanding(id)) {
        o->deadline = time_point::max();
        rearm_wait_timer();
    }
}

// The two timers are moved only earlier, never cancelled while the session lives: a timer set
// earlier than needed fires, finds nothing due and is set again. A held request answered before
// its wait and a die timer stopped by the next request, the steady state of a busy session, then
// cost no operation on the timer queue: the timers fire once a `wait` or an `inactivity`.
void session::rearm_wait_timer() {
    // One timer serves every held request: it is due no later than the earliest deadline.
    time_point earliest = time_point::max();
    for (const outstanding& o : outstanding_)
        earliest = std::min(earliest, o.deadline);
    if (earliest != time_point::max() &&
        (!wait_timer_.armed() || wait_timer_.deadline() > earliest))
        engine_.timers().arm(wait_timer_, earliest);
}

void session::arm_die_timer() {
    const auto inactivity = bosh() && bosh()->pause ? *bosh()->pause : settings_.inactivity;
    die_at_ = engine_.clock().now() + inactivity;
    if (!die_timer_.armed() || die_timer_.deadline() > die_at_)
        engine_.timers().arm(die_timer_, die_at_);
}

void session::cancel_die_timer() {
    die_at_ = time_point::max();
}

void session::on_die_timer(void* self) {
    auto& s = *static_cast<session*>(self);
    if (s.die_at_ == time_point::max())
        return; // stopped by a request since it was set
    if (s.engine_.clock().now() < s.die_at_)
        return s.engine_.timers().arm(s.die_timer_, s.die_at_); // restarted since: not due yet
    s.close_reason_ = close_reason::inactivity;
    s.fsm_.process(die_expired{});
}

void session::on_wait_timer(void* self) {
    auto& s = *static_cast<session*>(self);
    const time_point now = s.engine_.clock().now();
    // Every held request whose wait has passed is answered empty, oldest first.
    for (;;) {
        auto due = std::min_element(
            s.outstanding_.begin(), s.outstanding_.end(),
            [](const outstanding& a, const outstanding& b) { return a.deadline < b.deadline; });
        if (due == s.outstanding_.end() || due->deadline > now)
            break;
        const request_id rid = due->rid;
        due->deadline = time_point::max();
        s.fsm_.process(wait_expired{rid});
    }
    s.rearm_wait_timer();
}

void session::session_closed(close_reason why, std::vector<packet>) {
    if (metrics_block* mb = current_metrics)
        mb->sessions_closed[static_cast<std::size_t>(why)].add();
    if (why == close_reason::queue_overflow)
        count_refusal(refusal::queue_overflow);
    closed_ = true;
    close_reason_ = why;
    if (sink())
        sink()->end(why); // (the machine asked for it just before: respond(stream_sink_id, ..))
    die_at_ = time_point::max();
    engine_.timers().cancel(wait_timer_);
    engine_.timers().cancel(die_timer_);
    // Requests waiting for a gap that will never fill are answered too.
    if (rare_) {
        for (early_request& e : rare_->early)
            reply(e.ex, codec_.closing(e.request.rid, why));
        rare_->early.clear();
    }
    engine_.schedule_reap(this);
}

void session::unexpected_event(fsm_state state, std::string_view event) {
    // A hole in the transition table: a bug. Say so loudly and keep serving other sessions.
    logger().critical("session {}: no transition from {} on {}",
                      std::string_view(sid_.data(), sid_len_), to_string(state), event);
}

} // namespace megaphone
