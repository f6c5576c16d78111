#include "app/session.hpp"

#include "app/engine.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <utility>

namespace megaphone {

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
    , creation_rid_{first_rid} {
    if (sid.size() > sid_.size())
        throw std::length_error("session id too long");
    std::copy(sid.begin(), sid.end(), sid_.begin());
    sid_len_ = static_cast<std::uint8_t>(sid.size());
}

session::~session() = default;

broker& session::broker() noexcept {
    return engine_.broker();
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

void session::unsubscribe(std::string_view channel) {
    for (std::size_t i = 0; i < subscriptions_.size(); ++i)
        if (subscriptions_[i].ch->name == channel)
            return engine_.leave(*this, i);
}

bool session::subscribed(std::string_view channel) const noexcept {
    return std::any_of(subscriptions_.begin(), subscriptions_.end(),
                       [channel](const subscription& s) { return s.ch->name == channel; });
}

void session::close() {
    end(close_reason::server_terminate);
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
    fsm_.start(); // arms the die timer
    next_rid_ = creation.rid + 1;
    call_app([&] { app_.on_open(*this); });
    deliver(creation.messages);
    if (closed_)
        return ex.reply({200, codec_.kind(), codec_.closing(creation.rid, close_reason_)});
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
        if (rid - next_rid_ >= requests())
            return fail(protocol_error::item_not_found, ex);
        for (early_request& e : early_)
            if (e.request.rid == rid) {
                // A second copy of a waiting early request: the newest carries the answer.
                e.ex.reply({200, codec_.kind(), codec_.replaced(rid)});
                e.ex = std::move(ex);
                return;
            }
        if (outstanding_.size() + early_.size() >= requests() && !req.terminate)
            return fail(protocol_error::policy_violation, ex);
        early_.push_back({std::move(req), std::move(ex)});
        return;
    }

    // A repeat of a processed rid: answered before, held now, or lost with its connection.
    for (const cached_answer& c : cache_)
        if (c.rid == rid)
            return ex.reply({200, codec_.kind(), c.body});
    if (outstanding* o = find_outstanding(rid)) {
        // The client gave up on the held copy (a proxy cut it): the new copy takes its place.
        o->ex.reply({200, codec_.kind(), codec_.replaced(rid)});
        o->ex = std::move(ex);
        return;
    }
    if (next_rid_ - rid <= requests()) {
        // Its held copy lost its connection and was forgotten: hold it again, as if new (its
        // messages were delivered the first time and are not delivered twice).
        outstanding_.push_back({rid, std::move(ex)});
        fsm_.process(request_arrived{rid});
        return;
    }
    fail(protocol_error::item_not_found, ex);
}

void session::process(client_request&& req, exchange ex) {
    next_rid_ = req.rid + 1;

    // A polling session may not poll faster than `polling` with empty requests (BOSH §12).
    if (fsm_.params().polling && req.messages.empty() && !req.terminate) {
        const time_point now = engine_.clock().now();
        if (last_empty_poll_ != time_point{} && now - last_empty_poll_ < settings_.polling)
            return fail(protocol_error::policy_violation, ex);
        last_empty_poll_ = now;
    } else {
        last_empty_poll_ = {};
    }

    deliver(req.messages);
    if (closed_)
        return ex.reply({200, codec_.kind(), codec_.closing(req.rid, close_reason_)});
    if (req.terminate) {
        end(close_reason::client_terminate);
        return ex.reply({200, codec_.kind(), codec_.terminated(req.rid)});
    }
    outstanding_.push_back({req.rid, std::move(ex)});
    fsm_.process(request_arrived{req.rid});
}

void session::deliver(const std::vector<message>& messages)
{
    for (const message& m : messages) {
        if (closed_)
            break;
        call_app([&] { app_.on_message(*this, m); });
    }
}

template <class F>
void session::call_app(F&& f)
{
    // Application code that throws ends its own session, never the thread it runs on.
    try {
        f();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "megaphone: session %.*s: application error: %s\n",
                     static_cast<int>(sid_len_), sid_.data(), e.what());
        end(close_reason::internal_error);
    } catch (...) {
        std::fprintf(stderr, "megaphone: session %.*s: application error\n",
                     static_cast<int>(sid_len_), sid_.data());
        end(close_reason::internal_error);
    }
}

void session::drain_early() {
    // Process the waiting early requests whose turn has come, in rid order.
    for (bool progressed = true; progressed && !closed_;) {
        progressed = false;
        for (std::size_t i = 0; i < early_.size(); ++i) {
            if (early_[i].request.rid != next_rid_)
                continue;
            early_request e = std::move(early_[i]);
            early_.erase(early_.begin() + static_cast<std::ptrdiff_t>(i));
            process(std::move(e.request), std::move(e.ex));
            progressed = true;
            break;
        }
    }
}

void session::on_connection_lost(request_id rid, const exchange& ex) {
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
    case protocol_error::too_large:
    case protocol_error::system_shutdown:
        break;
    }
    ex.reply({http_status(e), codec_.kind(), codec_.error(e)});
}

session::outstanding* session::find_outstanding(request_id rid) {
    for (outstanding& o : outstanding_)
        if (o.rid == rid)
            return &o;
    return nullptr;
}

void session::remember(request_id rid, const packet& body) {
    cache_.push_back({rid, body});
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
    auto it = std::find_if(outstanding_.begin(), outstanding_.end(),
                           [id](const outstanding& o) { return o.rid == id; });
    if (it == outstanding_.end())
        return; // cannot happen: the machine answers only what it holds or was just given
    exchange ex = std::move(it->ex);
    outstanding_.erase(it);

    packet body;
    if (kind == answer_kind::closing) {
        body = codec_.closing(id, close_reason_);
    } else {
        if (id == creation_rid_) {
            const session_info info{this->id(), settings_.wait,       settings_.hold,
                                    requests(), settings_.inactivity, settings_.polling};
            body = codec_.created(info, id, packets);
        } else {
            body = codec_.data(id, packets);
        }
        // Kept for a client that lost this answer and sends the rid again.
        remember(id, body);
    }
    ex.reply({200, codec_.kind(), std::move(body)});
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

void session::rearm_wait_timer() {
    // One timer serves every held request: it is set for the earliest deadline.
    time_point earliest = time_point::max();
    for (const outstanding& o : outstanding_)
        earliest = std::min(earliest, o.deadline);
    if (earliest == time_point::max())
        engine_.timers().cancel(wait_timer_);
    else if (!wait_timer_.armed() || wait_timer_.deadline() != earliest)
        engine_.timers().arm(wait_timer_, earliest);
}

void session::arm_die_timer() {
    engine_.timers().arm(die_timer_, engine_.clock().now() + settings_.inactivity);
}

void session::cancel_die_timer() {
    engine_.timers().cancel(die_timer_);
}

void session::on_die_timer(void* self) {
    auto& s = *static_cast<session*>(self);
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
    closed_ = true;
    close_reason_ = why;
    engine_.timers().cancel(wait_timer_);
    engine_.timers().cancel(die_timer_);
    // Requests waiting for a gap that will never fill are answered too.
    for (early_request& e : early_)
        e.ex.reply({200, codec_.kind(), codec_.closing(e.request.rid, why)});
    early_.clear();
    engine_.schedule_reap(this);
}

void session::unexpected_event(fsm_state state, std::string_view event) {
    // A hole in the transition table: a bug. Say so loudly and keep serving other sessions.
    std::fprintf(stderr, "megaphone: session %.*s: no transition from %.*s on %.*s\n",
                 static_cast<int>(sid_len_), sid_.data(), static_cast<int>(to_string(state).size()),
                 to_string(state).data(), static_cast<int>(event.size()), event.data());
}

} // namespace megaphone
