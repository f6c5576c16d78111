// access: which door serves what, and the keys that open the public one (issue 16).
//
// A server listens on its public port (and HTTPS port, and with --reuse-port its node port: all
// reachable by strangers) and on an internal port (--internal-address, loopback by default;
// --internal-port). Nothing tells "local" from the peer address on the public port: behind a
// reverse proxy on the same host every request comes from 127.0.0.1, and X-Forwarded-For is
// whatever the client wrote. So the door a request came through is the listener's, never its
// address.
//
//   route_access::open       served on every door (the session mounts, static files, /admin
//                            which checks its own token)
//   route_access::publisher  POST /publish: always on the internal door; on the public doors
//                            only with --publish-key, and then only to requests carrying
//                            `Authorization: Bearer <key>` (401 + WWW-Authenticate otherwise);
//                            without a key the public doors do not serve it at all (404)
//   route_access::metrics    GET /metrics: always on the internal door; on the public doors
//                            open unless --metrics-token is set, then only with that bearer
//
// Keys are compared in constant time (auth::constant_time_equal): neither their bytes nor their
// length show in timing. A 401 is counted (refusal::unauthorized).
#pragma once

#include "auth/auth_hook.hpp"
#include "auth/patterns.hpp"
#include "auth/token.hpp"
#include "transport/http_connection.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace megaphone {

enum class route_access : std::uint8_t { open, publisher, metrics };

struct access_keys {
    /// Opens POST /publish on the public doors; empty: not served there.
    std::string publish_key;
    /// Guards GET /metrics on the public doors; empty: open there.
    std::string metrics_token;
};

/// nullopt: `in` may use a route of kind `kind`; otherwise the answer to give instead (404: not
/// served on this door; 401 with `WWW-Authenticate: Bearer`: a wrong or missing key, counted).
std::optional<response> check_access(route_access kind, const incoming& in,
                                     const access_keys& keys);

/// What a session may do (docs/PROTOCOL.md, "Tokens"). A client may give a signed token (JWT,
/// auth/token.hpp) at creation, and a fresh one on any later request (a refresh). With a token
/// the session has a user (`sub`) and may subscribe and publish where its `channels` and
/// `publish` patterns say; without one it may subscribe to any channel outside
/// `private_prefix` and publish where `client_publish` allows. A token that expired (past `exp`
/// plus the leeway) ends the session with not-authorized at its next request, unless that
/// request carries a valid new one. Checked at creation and refresh only: never per long-poll.
struct session_rules {
    /// Verifies tokens; null: no key configured, any token is refused.
    std::shared_ptr<const auth::token_verifier> tokens;
    /// Sessions without a valid token are refused (not-authorized).
    bool require_token = false;
    /// Channels a session without a token may not subscribe to (empty: none is private).
    std::string private_prefix = "private-";
    /// Where a session without a token may publish (empty set: nowhere).
    auth::pattern_set client_publish = auth::pattern_set::parse({"*"}).value();
    /// The wall clock tokens are checked against; empty: the system clock (tests set theirs).
    std::function<std::chrono::system_clock::time_point()> wall_clock;
    /// A session's token is expired once `exp` + leeway has passed (the verifier's leeway).
    std::chrono::seconds leeway{30};
    /// Publishes per second one session may make through the hub (a token bucket of
    /// `publish_burst`, refilled at `publish_rate`; session::take_publish_token()). Burst 0: no
    /// limit.
    double publish_rate = 50;
    std::uint32_t publish_burst = 500;

    std::chrono::system_clock::time_point now() const {
        return wall_clock ? wall_clock() : std::chrono::system_clock::now();
    }
};

/// What the operator configures (the command line's --token-secret, --require-token, ...).
struct client_rules_options {
    std::string token_secret;     ///< HS256; at least 32 bytes
    std::string token_public_key; ///< PEM: RS256 (RSA >= 2048 bits) or ES256 (P-256)
    bool require_token = false;
    std::string private_prefix = "private-";
    /// Anywhere for embedders; the megaphone binaries default to none (app/cli.hpp).
    std::vector<std::string> client_publish{"*"};
    double publish_rate = 50;
    std::uint32_t publish_burst = 500;
    /// --auth-url: the hub asks this backend whether a session may subscribe or publish
    /// (auth/auth_hook.hpp; app/hub.hpp); an empty url: the rules above decide.
    auth::hook_options hook;
};

/// The rules for `o`; throws std::invalid_argument with the reason (a bad key, a malformed
/// pattern).
std::shared_ptr<const session_rules> make_session_rules(const client_rules_options& o);

/// The rules of `config` (engine_config::rules), or the defaults when it has none.
const session_rules& rules_or_defaults(const std::shared_ptr<const session_rules>& rules) noexcept;

/// The outcome of a token given to a session (at creation or as a refresh).
struct token_outcome {
    /// The claims of a valid token; null with `refused` false: no token given, none required.
    std::unique_ptr<auth::token_claims> claims;
    bool refused = false;
    std::string_view why; ///< when refused, for the log: "missing", or auth::to_string(error)
};

/// Checks `token` (possibly empty) against `rules`: `required` says whether its absence is a
/// refusal (a creation under require_token).
token_outcome check_token(const session_rules& rules, std::string_view token, bool required);

/// True when `req` carries exactly one `Authorization: Bearer <token>` equal to `key` (constant
/// time); false for an empty key.
bool bearer_matches(const http::request<http::string_body>& req, std::string_view key) noexcept;

} // namespace megaphone
