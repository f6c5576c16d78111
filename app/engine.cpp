#include "app/engine.hpp"

#include "app/access.hpp"

#include "cluster/bus.hpp"
#include "fsm/metrics.hpp"
#include "transport/bosh_codec.hpp"

#include "app/log.hpp"

#include <spdlog/logger.h>

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <system_error>

namespace megaphone {

std::string random_token(std::size_t bytes) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::array<unsigned char, 64> raw{};
    if (bytes > raw.size())
        throw std::length_error("random_token: too many bytes");
    fill_random(std::span(raw).first(bytes));
    // Base64url without padding: 6 bits per character.
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    for (std::size_t i = 0; i < bytes; ++i) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += alphabet[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out += alphabet[(acc << (6 - bits)) & 63];
    return out;
}

namespace {
std::string_view transport_name(const session& s) noexcept {
    return s.kind() == content_kind::xml ? "bosh" : "json";
}

/// Normal ends are debug lines; an overflow (a client that does not keep up) is a warning. An
/// application error was logged as an error when it happened.
log_level close_level(close_reason why) noexcept {
    switch (why) {
    case close_reason::queue_overflow:
        return log_level::warn;
    default:
        return log_level::debug;
    }
}

// Shard indexes are written as one character of this alphabet after the node prefix.
constexpr std::string_view shard_digits = "0123456789abcdefghijklmnopqrstuvwxyz";
} // namespace

engine::engine(const engine_config& config, clock_source& clock, megaphone::broker& broker,
               unsigned shard)
    : config_{config}
    , clock_{clock}
    , broker_{broker}
    , shard_{shard} {
    if (shard >= shard_digits.size())
        throw std::invalid_argument("engine: too many shards");
}

engine::~engine() {
    // Sessions unlink their timers as they go; channels go with them.
    sessions_.clear();
    channels_.clear();
}

engine::operation::~operation() {
    if (--e_.depth_ == 0 && !e_.reap_.empty())
        e_.reap();
}

std::string engine::make_sid() {
    // "<node>-<shard><128 random bits>": routable by node and shard, unguessable by anyone.
    std::string sid = config_.node_id;
    sid += '-';
    sid += shard_digits[shard_];
    sid += random_token(16);
    return sid;
}

std::optional<unsigned> engine::shard_of(std::string_view sid) noexcept {
    const auto dash = sid.find('-');
    if (dash == std::string_view::npos || dash + 1 >= sid.size() || sid.size() > 32)
        return std::nullopt;
    const auto index = shard_digits.find(sid[dash + 1]);
    if (index == std::string_view::npos)
        return std::nullopt;
    return static_cast<unsigned>(index);
}

session* engine::find(std::string_view sid) noexcept {
    auto it = sessions_.find(sid);
    return it == sessions_.end() || it->second->closed() ? nullptr : it->second.get();
}

std::size_t engine::subscribers(std::string_view name) const noexcept {
    auto it = channels_.find(name);
    return it == channels_.end() ? 0 : it->second.members.size();
}

//--------------------------------------------------------------------------------------------------
// Transports

void engine::create(client_request&& req, application& app, const session_codec& codec,
                    exchange ex) {
    operation op{*this};
    // Who the client is, before anything is spent on it (app/access.hpp).
    const session_rules& rules = rules_or_defaults(config_.rules);
    token_outcome token = check_token(rules, req.token, rules.require_token);
    if (token.refused) {
        count_refusal(refusal::unauthorized);
        if (log_enabled(log_level::debug))
            logger().debug("session refused: token {}", token.why);
        return ex.reply(
            codec.error_response(protocol_error::not_authorized, req.bosh && !req.bosh->ver));
    }
    req.token.clear(); // checked: the creation request does not refresh it again
    // Then the application's word (peer, headers, claims): it may refuse, or name the user.
    authorization verdict =
        app.authorize(connect_info{req.peer, codec.kind(), req.headers, token.claims.get()});
    if (!verdict.allowed) {
        count_refusal(refusal::unauthorized);
        if (log_enabled(log_level::debug))
            logger().debug("session refused by the application");
        return ex.reply(
            codec.error_response(protocol_error::not_authorized, req.bosh && !req.bosh->ver));
    }
    req.headers = {}; // (not kept: the session does not need them)
    bool full = false;
    if (total_)
        full = total_->fetch_add(1, std::memory_order_relaxed) >= config_.max_sessions &&
               config_.max_sessions != 0;
    else
        full = config_.max_sessions != 0 && sessions_.size() >= config_.max_sessions;
    if (full) {
        if (total_)
            total_->fetch_sub(1, std::memory_order_relaxed);
        count_refusal(refusal::too_many_sessions);
        return ex.reply(
            codec.error_response(protocol_error::policy_violation, req.bosh && !req.bosh->ver));
    }

    // The client's values, capped by ours. wait 0 or hold 0 make a polling session.
    const auto wait = std::min<std::chrono::milliseconds>(
        req.wait ? std::chrono::seconds(*req.wait) : config_.max_wait, config_.max_wait);
    const auto hold =
        static_cast<std::uint16_t>(std::min<std::uint32_t>(req.hold.value_or(1), config_.max_hold));
    const session_settings settings{wait, config_.inactivity, config_.polling, hold,
                                    config_.max_queue};

    const std::string sid = make_sid();
    auto s = std::make_unique<session>(*this, app, codec, sid, settings, req.rid);
    session& ref = *s;
    ref.identify(std::move(token.claims), std::move(verdict.user));
    sessions_.emplace(ref.id(), std::move(s));
    if (log_enabled(log_level::debug))
        logger().debug("session open sid={} transport={} shard={}", ref.id(), transport_name(ref),
                       shard_);
    if (metrics_block* m = current_metrics)
        m
            ->sessions_created[static_cast<std::size_t>(
                codec.kind() == content_kind::xml ? transport_kind::bosh : transport_kind::json)]
            .add();
    ref.open(std::move(req), std::move(ex));
}

void engine::request(client_request&& req, const session_codec& codec, exchange ex) {
    operation op{*this};
    session* s = find(req.sid);
    if (!s) {
        // Only the holder of an overflowed session's sid learns why it ended (once).
        if (auto it = overflowed_.find(req.sid); it != overflowed_.end()) {
            const bool recent = it->second > clock_.now();
            overflowed_.erase(it);
            if (recent)
                return ex.reply(codec.error_response(protocol_error::policy_violation));
        }
        return ex.reply(codec.error_response(protocol_error::item_not_found));
    }
    s->on_request(std::move(req), std::move(ex));
}

void engine::connection_lost(std::string_view sid, request_id rid, const exchange& ex) {
    operation op{*this};
    if (session* s = find(sid))
        s->on_connection_lost(rid, ex);
}

void engine::open_stream(const stream_request& req, const stream_transport& transport,
                         exchange ex) {
    operation op{*this};
    session* s = find(req.sid);
    // BOSH sessions stay long-poll (XEP-0124); an unknown sid learns nothing more than 204.
    if (!s || s->kind() != content_kind::json)
        return ex.reply(transport.refusal());
    s->attach_stream(transport, req.last_id, req.rid, std::move(ex));
}

void engine::stream_written(std::string_view sid, const exchange& ex) {
    operation op{*this};
    if (session* s = find(sid))
        s->on_stream_written(ex);
}

//--------------------------------------------------------------------------------------------------
// Broker

bool engine::with_session(std::string_view sid, const std::function<void(session&)>& f) {
    operation op{*this};
    session* s = find(sid);
    if (!s)
        return false;
    f(*s);
    return true;
}

bool engine::push(std::string_view sid, const packet& p) {
    operation op{*this};
    session* s = find(sid);
    if (s)
        s->push(p);
    return s != nullptr;
}

std::size_t engine::publish(std::string_view name, const packet& p) {
    operation op{*this};
    auto it = channels_.find(name);
    if (it == channels_.end())
        return 0;
    // Members that close meanwhile stay in the list until the reap at the end of this call.
    std::size_t reached = 0;
    for (session* s : it->second.members)
        if (!s->closed()) {
            s->push(p);
            ++reached;
        }
    return reached;
}

std::size_t engine::broadcast(const packet& p) {
    operation op{*this};
    std::size_t reached = 0;
    for (auto& [id, s] : sessions_)
        if (!s->closed()) {
            s->push(p);
            ++reached;
        }
    return reached;
}

bool engine::subscribe(std::string_view sid, std::string_view name) {
    operation op{*this};
    session* s = find(sid);
    if (s)
        s->subscribe(name);
    return s != nullptr;
}

bool engine::unsubscribe(std::string_view sid, std::string_view name) {
    operation op{*this};
    session* s = find(sid);
    if (s)
        s->unsubscribe(name);
    return s != nullptr;
}

bool engine::close(std::string_view sid, close_reason why) {
    operation op{*this};
    session* s = find(sid);
    if (s)
        s->end(why);
    return s != nullptr;
}

void engine::shutdown() {
    operation op{*this};
    for (auto& [id, s] : sessions_)
        s->end(close_reason::system_shutdown);
}

void engine::expire_timers() {
    operation op{*this};
    timers_.expire(clock_.now());
}

//--------------------------------------------------------------------------------------------------
// Channels and reaping

namespace {
/// Takes `s` off the channel's recovering list, and the list away once it is empty.
void stop_recovering(channel& ch, session& s) {
    std::erase(*ch.recovering, &s);
    if (ch.recovering->empty())
        ch.recovering.reset();
}
} // namespace

void engine::join(session& s, std::string_view name, bool recovering) {
    auto it = channels_.find(name);
    if (it == channels_.end()) {
        it = channels_.try_emplace(std::string(name)).first;
        it->second.key = &it->first;
        if (observer_)
            it->second.members_everywhere = observer_->channel_opened(shard_, it->first);
    }
    channel& ch = it->second;
    if (recovering) {
        s.subscriptions_.push_back({&ch, session::subscription::recovering});
        if (!ch.recovering)
            ch.recovering = std::make_unique<std::vector<session*>>();
        ch.recovering->push_back(&s);
        return;
    }
    s.subscriptions_.push_back({&ch, static_cast<std::uint32_t>(ch.members.size())});
    ch.members.push_back(&s);
    if (ch.members_everywhere)
        ch.members_everywhere->fetch_add(1, std::memory_order_relaxed);
}

void engine::leave(session& s, std::size_t subscription_index) {
    const session::subscription sub = s.subscriptions_[subscription_index];
    s.subscriptions_.erase(s.subscriptions_.begin() +
                           static_cast<std::ptrdiff_t>(subscription_index));
    channel& ch = *sub.ch;
    if (sub.index == session::subscription::recovering) {
        stop_recovering(ch, s);
    } else {
        // Swap-remove, and tell the moved member where it now stands.
        session* moved = ch.members.back();
        ch.members[sub.index] = moved;
        ch.members.pop_back();
        if (ch.members_everywhere)
            ch.members_everywhere->fetch_sub(1, std::memory_order_relaxed);
        if (moved != &s)
            for (auto& other : moved->subscriptions_)
                if (other.ch == &ch)
                    other.index = sub.index;
    }
    if (ch.members.empty() && !ch.recovering) {
        if (observer_)
            observer_->channel_closed(shard_, ch.name());
        channels_.erase(channels_.find(ch.name()));
    }
}

void engine::resume(session& s, std::string_view name, const stream_position& since) {
    if (!history_) {
        join(s, name);
        s.recovered(name, recovery{});
        return;
    }
    join(s, name, /*recovering=*/true);
    // The answer comes back on this thread, in order with this channel's publishes (see
    // history_source); by then the session may have gone, or left the channel.
    history_->recover(shard_, name, since,
                      [this, sid = std::string(s.id()), ch = std::string(name)](recovery r) {
                          recovered(sid, ch, std::move(r));
                      });
}

void engine::tell_position(session& s, std::string_view name) {
    if (!history_) {
        s.recovered(name, recovery{});
        return;
    }
    // In order with the channel's publishes, like a recovery: every message published before the
    // position is asked for reaches the session before the position does.
    history_->recover(shard_, name, stream_position{},
                      [this, sid = std::string(s.id()), ch = std::string(name)](recovery r) {
                          operation op{*this};
                          session* s = find(sid);
                          if (s && s->subscribed(ch))
                              s->recovered(ch, std::move(r));
                      });
}

void engine::recovered(std::string_view sid, std::string_view name, recovery r) {
    operation op{*this};
    session* s = find(sid);
    if (!s)
        return;
    auto sub =
        std::find_if(s->subscriptions_.begin(), s->subscriptions_.end(),
                     [name](const session::subscription& x) { return x.ch->name() == name; });
    if (sub == s->subscriptions_.end() || sub->index != session::subscription::recovering)
        return; // left the channel meanwhile (and maybe joined again: a later answer is its)
    // Live from now on: the channel's next publish into this engine comes after the recovery's
    // position.
    channel& ch = *sub->ch;
    stop_recovering(ch, *s);
    sub->index = static_cast<std::uint32_t>(ch.members.size());
    ch.members.push_back(s);
    if (ch.members_everywhere)
        ch.members_everywhere->fetch_add(1, std::memory_order_relaxed);
    s->recovered(name, std::move(r));
}

void engine::remember_overflow(std::string_view sid) {
    const time_point now = clock_.now();
    while (!overflowed_order_.empty() &&
           (overflowed_order_.size() >= 1024 || !overflowed_.contains(overflowed_order_.front()) ||
            overflowed_.at(overflowed_order_.front()) <= now)) {
        overflowed_.erase(overflowed_order_.front());
        overflowed_order_.pop_front();
    }
    overflowed_order_.emplace_back(sid);
    overflowed_[std::string(sid)] = now + config_.inactivity;
}

void engine::reap() {
    // Runs outside every state machine: on_close may push and publish.
    while (!reap_.empty()) {
        session* s = reap_.back();
        reap_.pop_back();
        ++depth_;
        while (!s->subscriptions_.empty())
            leave(*s, s->subscriptions_.size() - 1);
        if (const auto level = close_level(s->close_reason_); log_enabled(level))
            logger().log(static_cast<spdlog::level::level_enum>(level),
                         "session close sid={} transport={} reason={}", s->id(), transport_name(*s),
                         to_string(s->close_reason_));
        try {
            s->app_.on_close(*s, s->close_reason_);
        } catch (const std::exception& e) {
            logger().error("on_close failed sid={}: {}", s->id(), e.what());
        } catch (...) {
            logger().error("on_close failed sid={}", s->id());
        }
        --depth_;
        if (s->close_reason_ == close_reason::queue_overflow)
            remember_overflow(s->id());
        sessions_.erase(s->id());
        if (total_)
            total_->fetch_sub(1, std::memory_order_relaxed);
    }
}

} // namespace megaphone
