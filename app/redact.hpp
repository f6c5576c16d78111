// redact: what a log line may say about a request's credentials (issue 20).
//
// A credential does not belong in a URL (browser history, proxies' logs, the Referer header),
// but clients put them there anyway, and Megaphone's own /admin page once did. Whatever
// arrives, a log line never repeats it: the access log writes the request target through
// redact_target(), which replaces the value of every query parameter that carries a credential
// with "REDACTED" and keeps everything else byte for byte. Headers are never logged at all
// (Authorization, X-Megaphone-Token, Cookie, ...), nor are request bodies.
//
// The credential parameters are token, access_token, refresh_token, id_token, jwt, auth,
// authorization, key, api_key, apikey, publish_key, metrics_token, admin_token, cluster_key,
// secret, password, signature, and sid (a session's id is its capability: with it and the next
// rid anyone may act as the session). Names match in any case, percent-decoded, with '-' taken
// for '_' (`?Access-Token=`, `?%74oken=` are redacted too).
#pragma once

#include <string>
#include <string_view>

namespace megaphone {

/// What a credential's value becomes in a log line.
inline constexpr std::string_view redacted = "REDACTED";

/// Whether a query parameter named `name` (as written in the URL) carries a credential.
bool is_credential_parameter(std::string_view name);

/// `target` (an HTTP request target: path, then an optional query) with the value of every
/// credential parameter of its query replaced by "REDACTED". Pairs are split at '&', ';' and
/// any further '?', so that a value cannot hide a second pair from this while an application
/// splits differently; all other bytes are kept.
std::string redact_target(std::string_view target);

} // namespace megaphone
