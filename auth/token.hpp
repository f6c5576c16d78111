// token_verifier: checks a client's signed token (a JWT, RFC 7519, in JWS compact form) and
// gives its claims. The cryptography, base64url and the header and payload decoding are
// cpp-jwt's (Debian libcpp-jwt-dev), on OpenSSL; what is ours is the policy around them:
//
// - The algorithm is pinned by the configured keys, never taken from the token: an HS256 secret
//   admits HS256, a public key admits the one algorithm its type gives (RSA: RS256, EC P-256:
//   ES256). Any other `alg`, `none` included, is wrong_algorithm, and the key is then never
//   used: an HS256 token whose HMAC key is the RS256 public key's PEM text (the classic
//   confusion attack) is refused before any HMAC is computed.
// - An HS256 signature is compared in constant time (cpp-jwt's own HS256 verify compares with
//   `==`, whose time shows how many leading bytes of a forged signature are right).
// - Times come from the caller (`now`): exp and nbf are checked here, with the leeway, not by
//   cpp-jwt (it reads the system clock).
// - A token longer than max_size is refused unread, and only base64url characters and two dots
//   reach the decoder; each part must be canonical base64url, so a token has one spelling.
//
// Claims: `sub` (required, a non-empty string: the user), `exp` and `nbf` (NumericDate: a number
// of seconds since the epoch; exp required unless require_expiry is off), `channels` and
// `publish` (optional arrays of patterns, auth/patterns.hpp; absent: nothing allowed). Other
// claims are ignored. A claim of the wrong type, or a malformed pattern, refuses the token.
#pragma once

#include "auth/expected.hpp"
#include "auth/patterns.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace megaphone::auth {

/// Why a token was refused. Every refusal means the same to the client (not authorized); the
/// reason is for the server's log and counters.
enum class token_error : std::uint8_t {
    too_large = 1,   ///< longer than token_options::max_size: refused before any parsing
    malformed,       ///< not three parts in canonical base64url, a header or payload that is
                     ///< not a JSON object, no `alg`, a `typ` other than JWT, a `crit` header
    wrong_algorithm, ///< an `alg` the configured keys do not pin (`none` included)
    bad_signature,   ///< the signature does not verify with the configured key
    bad_claim,       ///< sub missing or not a string; exp/nbf not numbers; channels/publish not
                     ///< arrays of valid patterns
    missing_expiry,  ///< no `exp`, and token_options::require_expiry
    expired,         ///< now >= exp + leeway
    not_yet_valid,   ///< now < nbf - leeway
};
std::string_view to_string(token_error) noexcept;

/// What a valid token says.
struct token_claims {
    std::string subject; ///< `sub`: the user
    /// `exp`, when the token has one: the session must renew its token before then.
    std::optional<std::chrono::system_clock::time_point> expires;
    pattern_set channels; ///< `channels`: what the holder may subscribe to
    pattern_set publish;  ///< `publish`: what the holder may publish to
};

struct token_options {
    /// The HS256 secret, at least 32 bytes (RFC 7518 3.2: a key as long as the hash). Empty:
    /// HS256 tokens are refused.
    std::string secret;
    /// A public key in PEM (SubjectPublicKeyInfo, "-----BEGIN PUBLIC KEY-----"): an RSA key of
    /// at least 2048 bits admits RS256, an EC key on P-256 admits ES256. Empty: none.
    std::string public_key_pem;
    /// Clock skew forgiven on exp and nbf between the token's issuer and this server: 30 s
    /// covers NTP-synchronised machines with room to spare and keeps a stolen token's extra
    /// life short.
    std::chrono::seconds leeway{30};
    /// Longer tokens are refused before parsing. A token holds a user and two short pattern
    /// lists, a few hundred bytes; 4 KiB leaves room and bounds the work a stranger can cause.
    std::size_t max_size = 4096;
    /// Refuse tokens without `exp` (default): a leaked token without one works forever. Turn
    /// off only for issuers that cannot set it.
    bool require_expiry = true;
};

class token_verifier {
public:
    /// Throws std::invalid_argument, with a message for the operator, when neither a secret nor
    /// a public key is given, the secret is shorter than 32 bytes, or the PEM is not a public
    /// RSA (>= 2048 bits) or EC P-256 key.
    explicit token_verifier(token_options options);

    /// The claims of `token` if it is valid at `now`, else why not. Thread-safe (const, no
    /// shared state).
    expected<token_claims, token_error> verify(std::string_view token,
                                               std::chrono::system_clock::time_point now) const;

    /// The algorithms admitted, for the start-up line: "HS256", "RS256", "HS256, ES256".
    std::string algorithms() const;

private:
    token_options options_;
    std::string_view key_algorithm_; ///< what the public key admits: "RS256", "ES256", "" (none)
};

} // namespace megaphone::auth
