// xmpp_app: the XMPP example on the application API. Each BOSH session is one XMPP connection,
// named by its sid; the logic is xmpp::core (xmpp_core.hpp), this class only moves stanzas
// between it and the sessions: what the core answers for the session at hand is pushed to it,
// what it routes to other connections goes through the broker.
//
// BOSH only: a session of another transport (JSON) is closed as soon as it opens.
#pragma once

#include "app/application.hpp"
#include "examples/xmpp/xmpp_core.hpp"

namespace megaphone::examples {

class xmpp_app final : public application {
public:
    explicit xmpp_app(xmpp::config cfg = {})
        : core_(std::move(cfg)) {}

    void on_open(session& s) override;
    void on_message(session& s, const message& m) override;
    void on_close(session& s, close_reason why) override;
    void on_stream_restart(session& s) override;

    xmpp::core& core() noexcept { return core_; }

private:
    static void deliver(session& s, const xmpp::outputs& out);

    xmpp::core core_; // thread-safe: sessions of every shard call it
};

} // namespace megaphone::examples
