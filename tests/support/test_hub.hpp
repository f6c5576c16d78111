// The hub's client messages for tests on megaphone::testing (no server): {"subscribe": ch} (with
// an optional "recover" cursor), {"unsubscribe": ch}, {"publish": ch, "data": X} (enveloped as
// the hub does), {"close": true}.
#pragma once

#include "app/hub.hpp"
#include "app/session.hpp"
#include "transport/json_codec.hpp"

namespace megaphone::test {

class test_hub final : public application {
public:
    void on_message(session& s, const message& m) override {
        const nlohmann::json& msg = m.json();
        if (msg.contains("subscribe")) {
            const auto ch = msg["subscribe"].get<std::string>();
            if (msg.contains("recover"))
                s.subscribe(ch, decode_stream_position(msg["recover"]).value());
            else
                s.subscribe(ch);
        } else if (msg.contains("unsubscribe")) {
            s.unsubscribe(msg["unsubscribe"].get<std::string>());
        } else if (msg.contains("publish")) {
            const auto ch = msg["publish"].get<std::string>();
            s.broker().publish(ch, hub::envelope(ch, msg.value("data", nlohmann::json())));
        } else if (msg.contains("close")) {
            s.close();
        }
    }
};

} // namespace megaphone::test
