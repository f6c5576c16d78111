// hub: the built-in publish/subscribe application of the `megaphone` binary, written on the
// application API like any other app. Clients send {"subscribe": ch}, {"unsubscribe": ch},
// {"publish": ch, "data": X}; subscribers of ch receive {"channel": ch, "data": X}. Backends
// publish with POST /publish/{ch} (body: the JSON value X), answered {"sessions": N}.
//
// Who may subscribe and publish: application::may_subscribe / may_publish (the token's patterns,
// the private prefix, --client-publish), or, when the server's options name an --auth-url
// (client_rules_options::hook), the backend there (auth/auth_hook.hpp). With the hook a
// subscribe or publish takes effect when the backend (or the hook's cache) has answered, through
// broker::with_session: the request that carried it may be answered before; a refusal comes as
// {"error": "forbidden", "channel": C} in a later answer. A session's subscribes and publishes
// on one channel keep their order.
#pragma once

#include "app/application.hpp"
#include "app/server.hpp"

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string_view>

namespace megaphone {

class hub final : public application {
public:
    /// Registers POST /publish/{ch} on `srv`; starts the --auth-url hook when its options
    /// name one.
    explicit hub(server& srv);
    ~hub() override;

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

private:
    /// Runs act(session&) once `s` is known to be allowed `action` on `channel`; otherwise
    /// tells the session forbidden (counted).
    template <class Act>
    void when_allowed(session& s, std::string_view channel, auth::hook_action action, Act act);

    std::unique_ptr<auth::auth_hook> hook_;
};

} // namespace megaphone
