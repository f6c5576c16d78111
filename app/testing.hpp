// megaphone::testing: unit-test an application without sockets and with a manual clock.
//
//   my_app app;
//   megaphone::testing::harness h{app};            // one engine, a manual clock
//   auto& alice = h.connect();                      // creates a session, like a browser would
//   auto poll = alice.poll();                       // a long-poll, held by the session
//   alice.send({{"say", "hi"}});                    // client messages go to on_message
//   CHECK(alice.received() == ...);                 // everything pushed to alice, in order
//   CHECK(alice.state() == megaphone::fsm_state::have_request);
//   h.advance(std::chrono::seconds(60));            // fires the wait timer: poll answered empty
//
// The harness is the sessions' broker: publish/push/broadcast made by the application are
// queued and run after the current step, in call order, as the server runs them after the
// current event. Everything is single-threaded and deterministic.
#pragma once

#include "app/application.hpp"
#include "app/engine.hpp"
#include "cluster/local_bus.hpp"
#include "fsm/clock.hpp"
#include "transport/exchange.hpp"
#include "transport/json_codec.hpp"

#include <nlohmann/json.hpp>

#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace megaphone::testing {

class harness;
class client;

/// One simulated HTTP request of a client.
class request {
public:
    request_id rid() const noexcept { return rid_; }
    bool answered() const noexcept { return answer_.has_value(); }
    /// The HTTP status and the JSON body of the answer (throws if not answered yet).
    unsigned status() const { return answer_.value().status; }
    const nlohmann::json& body() const { return json_.value(); }
    /// The messages of the answer ([] when empty, or for an error).
    nlohmann::json messages() const;
    /// The answer's body as sent (BOSH: the <body/> XML).
    std::string_view text() const { return answer_.value().body.view(); }
    /// The Content-Type the answer asks for, when it overrides the transport's default.
    std::string_view content_type() const { return answer_.value().content_type.view(); }
    /// BOSH: the stanzas of the answer, each as standalone XML.
    std::vector<std::string> stanzas() const;
    /// The client closes this request's connection (a held request: the session hears it).
    void drop();

private:
    friend class client;
    friend class harness;
    struct target;
    request(harness& h, std::string sid, request_id rid);

    harness& harness_;
    std::string sid_;
    request_id rid_;
    std::shared_ptr<target> target_;
    std::optional<response> answer_;
    std::optional<nlohmann::json> json_;
};

/// A simulated browser with one session.
class client {
public:
    const std::string& sid() const noexcept { return sid_; }
    /// The creation answer (sid, wait, hold, requests, inactivity, polling, messages).
    const nlohmann::json& created() const noexcept { return created_; }
    /// The creation request, answered (both transports; BOSH: read its <body/> attributes).
    const request& creation() const { return requests_.front(); }

    /// Sends a request with `messages` (none: a poll). It may be answered now or stay held.
    request& send(std::vector<nlohmann::json> messages = {});
    request& poll() { return send(); }
    /// Sends the same rid again (a client that lost the answer).
    request& resend(const request& r);
    /// Sends a request with an explicit rid (to test early or out-of-window rids). Later
    /// send()s continue after the highest rid sent.
    request& send_as(request_id rid, std::vector<nlohmann::json> messages = {});
    /// Sends the JSON request `body` as the transport decodes it (its `sid` is set; `rid`
    /// defaults to the next one): for fields send() does not write, such as the upgrade's
    /// `stream_ack` and `streaming`. A rid already sent is sent again.
    request& send_json(nlohmann::json body);
    /// The rid the next send() uses.
    request_id next_rid() const noexcept { return next_rid_; }
    /// Ends the session from the client's side.
    request& terminate();

    /// BOSH clients (harness::connect_bosh): sends `stanzas` in a <body/> with `attributes`
    /// added to it (e.g. "pause='30'").
    request& send_xml(std::vector<std::string> stanzas, const std::string& attributes = "");
    /// BOSH: the same with an explicit rid (to test early or out-of-window rids).
    request& send_xml_as(request_id rid, std::vector<std::string> stanzas,
                         const std::string& attributes = "") {
        return issue_xml(rid, std::move(stanzas), attributes);
    }
    /// BOSH: an XEP-0206 stream restart (xmpp:restart='true').
    request& restart();
    /// BOSH: every stanza received so far, in rid order (creation answer included).
    std::vector<std::string> stanzas() const;

    /// Every message delivered to this client so far, in rid order (creation answer included).
    std::vector<nlohmann::json> received() const;
    /// Messages received since the last call to take().
    std::vector<nlohmann::json> take();

    /// The session's machine state; `closed` once the session has ended.
    fsm_state state() const;
    bool closed() const { return state() == fsm_state::closed; }
    /// Packets queued in the session, waiting for a request.
    std::size_t queued() const;
    /// Requests held now.
    std::size_t held() const;

private:
    friend class harness;
    client(harness& h, const nlohmann::json& options, std::vector<nlohmann::json> messages);
    client(harness& h, const std::string& creation_body);
    request& issue_xml(request_id rid, std::vector<std::string> stanzas,
                       const std::string& attributes);

    harness& harness_;
    std::string sid_;
    nlohmann::json created_;
    request_id next_rid_;
    request& issue(client_request&& req);

    std::list<request> requests_; // stable addresses
    std::size_t taken_ = 0;
};

class harness final : public broker, private bus_listener, private history_source {
public:
    /// Publishes go through a local_bus with `history` (positions, stamps, recovery), on the
    /// harness's clock.
    explicit harness(application& app, engine_config config = {}, bus_options history = {});
    ~harness() override;

    /// Creates a session. `options` may set "wait", "hold", "recover" ({"ch": {"epoch": E,
    /// "offset": K}}), "token" (a signed client token) and "headers" ({"Cookie": "..."}: what
    /// application::authorize sees); `messages` go with the creation. Throws
    /// std::runtime_error when the creation is refused (a token, application::authorize).
    client& connect(const nlohmann::json& options = nlohmann::json::object(),
                    std::vector<nlohmann::json> messages = {});
    /// Creates a BOSH session with this creation <body/> (its rid is used as the first rid). A
    /// creation the application refuses gives a client that is closed from the start.
    /// The default asks for host localhost, XEP-0206, wait 60, hold 1.
    client& connect_bosh(const std::string& creation_body =
                             "<body rid='1000' to='localhost' xml:lang='en' ver='1.6' wait='60' "
                             "hold='1' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh' "
                             "xmlns='http://jabber.org/protocol/httpbind'/>");
    /// Moves the clock and fires every timer that is due (wait, inactivity), in order.
    void advance(duration d);
    /// Runs the broker calls the application made (done after every step anyway).
    void settle();

    megaphone::engine& engine() noexcept { return engine_; }
    manual_clock& clock() noexcept { return clock_; }
    /// How each session closed, by sid, as on_close saw it.
    std::optional<close_reason> close_reason_of(std::string_view sid) const;

    // broker: queued, run in call order after the current step
    using broker::broadcast;
    using broker::publish;
    using broker::push;
    void push(std::string_view sid, packet p) override;
    void publish(std::string_view channel, packet p,
                 std::function<void(const publish_result&)> done = {}) override;
    void broadcast(packet p) override;
    void subscribe(std::string_view sid, std::string_view channel) override;
    void unsubscribe(std::string_view sid, std::string_view channel) override;
    void close(std::string_view sid) override;
    void with_session(std::string_view sid, std::function<void(session&)> f) override;

private:
    friend class client;
    friend class request;
    class closing_observer;

    void step(const std::function<void(megaphone::engine&)>& f);
    // bus_listener, history_source: queued like every other step
    std::size_t deliver(std::string_view channel, const packet& stamped,
                        std::uint64_t offset) override;
    void recover(unsigned shard, std::string_view channel, const stream_position& since,
                 std::function<void(recovery)> done) override;

    std::unique_ptr<application> observer_;
    engine_config config_;
    manual_clock clock_;
    megaphone::engine engine_;
    local_bus bus_;
    std::deque<std::function<void(megaphone::engine&)>> pending_;
    std::list<client> clients_;
    std::vector<std::pair<std::string, close_reason>> closed_;
    bool settling_ = false;
};

} // namespace megaphone::testing
