// session: one Comet session, as the application sees it and as the engine drives it.
//
// A session owns its state machine (fsm/), its two timers (die, and wait for the oldest held
// request), the requests it holds, the requests that arrived early, and the answers it may have
// to send again. It belongs to one engine (one thread); the engine owns it and destroys it after
// its machine reached `closed` and the application's on_close ran.
//
// rid rules (docs/PROTOCOL.md): requests are processed in rid order; early ones wait; a repeated
// rid gets its cached answer, or takes the place of its held copy, or (when its connection was
// lost) is held again; anything else outside the window ends the session with item-not-found.
#pragma once

#include "app/application.hpp"
#include "fsm/session_fsm.hpp"
#include "fsm/timer_queue.hpp"
#include "transport/exchange.hpp"
#include "transport/protocol.hpp"

#include <boost/container/small_vector.hpp>

#include <any>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace megaphone {

namespace auth {
struct token_claims;
} // namespace auth

class engine;
class stream_sink;
class stream_transport;
struct channel;

/// What a session was created with (negotiated from the client's values and the server's caps).
struct session_settings {
    std::chrono::milliseconds wait;
    std::chrono::milliseconds inactivity;
    std::chrono::milliseconds polling;
    std::uint16_t hold;
    std::uint32_t max_queue;
};

class session final : private session_effects {
public:
    std::string_view id() const noexcept { return {sid_.data(), sid_len_}; }
    fsm_state state() const noexcept { return fsm_.state(); }
    bool closed() const noexcept { return closed_; }
    const session_settings& settings() const noexcept { return settings_; }
    /// Packets waiting for a request.
    std::size_t queued() const noexcept { return fsm_.queued().size(); }
    /// Requests held now.
    std::size_t held() const noexcept { return fsm_.held().size(); }
    /// A streaming sink (SSE) is attached.
    bool streaming() const noexcept { return fsm_.streaming(); }
    /// The transport's kind of payload: content_kind::json (JSON) or content_kind::xml (BOSH).
    content_kind kind() const noexcept { return codec_.kind(); }
    /// BOSH sessions: the creation request's `to` (the host it asked for) and `xml:lang`;
    /// empty for JSON sessions.
    std::string_view host() const noexcept;
    std::string_view lang() const noexcept;
    /// When the session was created (its engine's clock), and the address that created it.
    time_point created() const noexcept { return created_; }
    const peer_address& peer() const noexcept { return peer_; }
    /// Who the client is: the user application::authorize gave, else its token's `sub`; empty
    /// for a session with neither.
    std::string_view user() const noexcept;
    /// The default access rules (app/access.hpp, application::may_subscribe/may_publish): the
    /// token's `channels` / `publish` patterns; without a token, any channel outside the
    /// private prefix / where --client-publish allows.
    bool token_allows_subscribe(std::string_view channel) const noexcept;
    bool token_allows_publish(std::string_view channel) const noexcept;
    /// Takes one publish from the session's token bucket (session_rules::publish_rate, burst);
    /// false when it is empty: the publish is refused (refusal::publish_rate, counted).
    bool take_publish_token();

    /// Pushes to this session; a no-op once it has closed.
    void push(packet p);
    void push(const nlohmann::json& value);
    void subscribe(std::string_view channel);
    /// Subscribes from the cursor `since`: the application's on_recovered() is told what the
    /// channel's history holds after it, those messages are pushed, then live ones follow, each
    /// exactly once. An empty epoch asks only for the channel's position (nothing is replayed).
    /// Asynchronous: messages published meanwhile come after the replay, none is lost. Already
    /// subscribed: the subscription starts over from `since`; with an empty epoch it goes on
    /// untouched, and the position is told after the messages already on their way.
    void subscribe(std::string_view channel, const stream_position& since);
    void unsubscribe(std::string_view channel);
    bool subscribed(std::string_view channel) const noexcept;
    /// Ends the session: held requests (and the creation request, from on_open) are answered
    /// with terminate and the condition of `why` (server_terminate: none; host_unknown:
    /// host-unknown; ...).
    void close(close_reason why = close_reason::server_terminate);

    /// Every session's broker: to reach other sessions, channels, everyone.
    megaphone::broker& broker() noexcept;
    /// The application's own per-session data.
    std::any& data() noexcept { return data_; }

    session(engine& owner, application& app, const session_codec& codec, std::string_view sid,
            const session_settings& settings, request_id first_rid);
    ~session() override;
    session(const session&) = delete;
    session& operator=(const session&) = delete;

private:
    friend class engine;

    struct outstanding {
        request_id rid;
        exchange ex;
        time_point deadline = time_point::max(); // of its wait timer; max: not armed
    };
    struct early_request {
        client_request request;
        exchange ex;
    };
    struct cached_answer {
        request_id rid;
        packet body;
        time_point at; // when it was sent
    };
    struct bosh_state;
    struct subscription {
        /// index: in ch->members; `recovering` while in ch->recovering (waiting for history).
        static constexpr std::uint32_t recovering = ~std::uint32_t{0};
        channel* ch;
        std::uint32_t index;
    };

    // Engine entry points.
    /// Who the client is: its token's claims (may be null), and the user the application gave
    /// (application::authorize; empty: none), which wins over the token's subject.
    void identify(std::unique_ptr<auth::token_claims> claims, std::string user);
    void open(client_request&& creation, exchange ex);
    void on_request(client_request&& req, exchange ex);
    void on_connection_lost(request_id rid, const exchange& ex);
    /// A stream of `transport` opens (the newest sink wins) from the client's position
    /// `last_id`, after the client's request `fence`; one the session cannot serve exactly ends
    /// the session, and gets the transport's refusal, as does a stale one (its client gave it
    /// up already: the session goes on).
    void attach_stream(const stream_transport& transport, std::optional<std::uint64_t> last_id,
                       std::optional<request_id> fence, exchange ex);
    /// The attached stream `ex` wrote its last piece whole.
    void on_stream_written(const exchange& ex);
    void end(close_reason why);
    /// Tells the application what a subscription from a cursor found, then pushes it.
    void recovered(std::string_view channel, recovery r);

    void process(client_request&& req, exchange ex);
    void drain_early();
    /// Passes client messages to the application, in order, until the session closes.
    void deliver(const std::vector<message>& messages);
    template <class F>
    void call_app(F&& f);
    void fail(protocol_error e, const exchange& ex);
    /// Answers `ex` with `body`, in this session's content type.
    void reply(const exchange& ex, packet body, unsigned status = 200) const;
    bool bosh_checks_pass(const client_request& req, const exchange& ex);
    /// The request's `stream_ack`: the stream it gave up is rewound (app/stream_sink.hpp). False
    /// when the position cannot be served and the request was answered (the session ended).
    bool rewind_stream(const client_request& req, const exchange& ex);
    /// The request must be answered at once and empty: its client has or opens a stream.
    bool expects_stream(const client_request& req) const noexcept;
    /// A refresh (`req.token`) replaces the claims; an expired token without one ends the
    /// session. False when the request was answered (not-authorized).
    bool token_checks_pass(const client_request& req, const exchange& ex);
    void pause(const client_request& req, exchange ex);
    void remember(request_id rid, const packet& body);
    void apply_ack(request_id ack);
    outstanding* find_outstanding(request_id rid);
    void rearm_wait_timer();
    static void on_die_timer(void* self);
    static void on_wait_timer(void* self);
    std::uint32_t requests() const noexcept { return settings_.hold + 1u; }

    // session_effects
    void respond(request_id id, std::vector<packet> packets, answer_kind kind) override;
    void arm_wait_timer(request_id id) override;
    void cancel_wait_timer(request_id id) override;
    void arm_die_timer() override;
    void cancel_die_timer() override;
    void session_closed(close_reason why, std::vector<packet> undelivered) override;
    void unexpected_event(fsm_state state, std::string_view event) override;

    engine& engine_;
    application& app_;
    const session_codec& codec_;
    session_settings settings_;
    session_fsm fsm_;
    timer_node die_timer_;  // set no later than die_at_ (see arm_die_timer)
    timer_node wait_timer_; // set no later than the earliest held request's deadline
    time_point die_at_ = time_point::max(); // when the die timer is due; max: not running
    boost::container::small_vector<outstanding, 1> outstanding_; // held, or being processed
    boost::container::small_vector<cached_answer, 2> cache_;
    // Most sessions are on one channel: it is kept inline (no allocation of its own).
    boost::container::small_vector<subscription, 1> subscriptions_;
    struct publish_bucket {
        double tokens;
        time_point last;
    };
    // What few sessions have (BOSH state, a stream sink, a token's claims, a publish bucket,
    // requests that came before their turn) is behind one pointer, made with the first of them
    // and kept to the session's end: a held long-poll is 48 B smaller for it (issue 6).
    struct rare_parts;
    std::unique_ptr<rare_parts> rare_;
    rare_parts& rare();
    bosh_state* bosh() const noexcept;
    stream_sink* sink() const noexcept;
    auth::token_claims* claims() const noexcept;
    std::any data_;
    request_id next_rid_;      // the rid processed next
    request_id creation_rid_;  // answered with the creation answer
    request_id last_answered_; // the highest rid answered so far
    time_point last_empty_poll_{};
    time_point created_{};
    peer_address peer_{};
    std::array<char, 32> sid_{};
    std::uint8_t sid_len_ = 0;
    bool uses_ack_ = false;
    bool closed_ = false;
    bool app_user_ = false; // claims_ holds only the application's user: the tokenless rules apply
    close_reason close_reason_ = close_reason::server_terminate;
};

} // namespace megaphone
