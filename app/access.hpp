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

#include "transport/http_connection.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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

/// True when `req` carries exactly one `Authorization: Bearer <token>` equal to `key` (constant
/// time); false for an empty key.
bool bearer_matches(const http::request<http::string_body>& req, std::string_view key) noexcept;

} // namespace megaphone
