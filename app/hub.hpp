// hub: the built-in publish/subscribe application of the `megaphone` binary, written on the
// application API like any other app. Clients send {"subscribe": ch}, {"unsubscribe": ch},
// {"publish": ch, "data": X}; subscribers of ch receive {"channel": ch, "data": X}. Backends
// publish with POST /publish/{ch} (body: the JSON value X), answered {"sessions": N}.
#pragma once

#include "app/application.hpp"
#include "app/server.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string_view>

namespace megaphone {

class hub final : public application {
public:
    /// Registers POST /publish/{ch} on `srv`.
    explicit hub(server& srv);

    void on_message(session& s, const message& m) override;
    /// A creation's `recover`: subscribes from the cursor (a bad channel name gets an error
    /// message instead).
    void on_recover(session& s, std::string_view channel, const stream_position& since) override;

    /// The message subscribers of `channel` receive for `data`.
    static nlohmann::json envelope(std::string_view channel, const nlohmann::json& data);
    /// envelope(channel, data) encoded for the JSON transport (the same bytes).
    static packet envelope_packet(std::string_view channel, const nlohmann::json& data);
    /// The same bytes for the body of POST /publish/{channel} when it is a flat object of
    /// plain strings and integers, encoded without a JSON parser; nullopt for any other body.
    static std::optional<packet> simple_envelope(std::string_view channel, std::string_view body);
    /// What POST /publish/{channel} publishes for `body` (one JSON value): the envelope's bytes;
    /// nullopt when the body is not one JSON value. `channel` must be valid_channel().
    static std::optional<packet> publish_packet(std::string_view channel, std::string_view body);
    /// {"error": "forbidden", "channel": C}: what a session is told when may_subscribe or
    /// may_publish says no.
    static nlohmann::json forbidden(std::string_view channel);
    /// Channel names: 1 to 256 bytes of valid UTF-8 without control characters (C0, DEL, C1).
    static bool valid_channel(std::string_view channel) noexcept;
};

} // namespace megaphone
