#include "auth/token.hpp"

#include "auth/secret.hpp"

// cpp-jwt defines ::json_t and ::system_time_t: it stays in this file, out of token.hpp.
#include <jwt/jwt.hpp>
#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

namespace megaphone::auth {

namespace {

using nlohmann::json;

/// RFC 7518 3.2: an HS256 key at least as long as the hash (256 bits).
constexpr std::size_t min_secret_size = 32;
/// RFC 7518 3.3: RS256 keys of 2048 bits or more.
constexpr int min_rsa_bits = 2048;

struct bio_deleter {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct pkey_deleter {
    void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};

/// Empties the thread's OpenSSL error queue on the way out: a failed parse or verification
/// leaves entries there, and a TLS stream on the same thread would read them as its own.
struct openssl_errors_cleared {
    openssl_errors_cleared() = default;
    openssl_errors_cleared(const openssl_errors_cleared&) = delete;
    openssl_errors_cleared& operator=(const openssl_errors_cleared&) = delete;
    ~openssl_errors_cleared() { ERR_clear_error(); }
};

/// The one algorithm the public key admits, by its type; throws what is wrong with it.
std::string_view algorithm_of(const std::string& pem) {
    const openssl_errors_cleared cleared;
    std::unique_ptr<BIO, bio_deleter> bio{
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
    if (!bio)
        throw std::bad_alloc();
    // The same reader cpp-jwt verifies with: what it refuses, we refuse now, not per token.
    std::unique_ptr<EVP_PKEY, pkey_deleter> key{
        PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr)};
    if (!key)
        throw std::invalid_argument(
            "token public key: not a PEM public key (-----BEGIN PUBLIC KEY-----)");
    switch (EVP_PKEY_get_base_id(key.get())) {
    case EVP_PKEY_RSA: {
        const int bits = EVP_PKEY_get_bits(key.get());
        if (bits < min_rsa_bits)
            throw std::invalid_argument("token public key: an RSA key of " + std::to_string(bits) +
                                        " bits, RS256 needs 2048 or more");
        return "RS256";
    }
    case EVP_PKEY_EC: {
        char group[80] = {};
        std::size_t length = 0;
        if (EVP_PKEY_get_group_name(key.get(), group, sizeof group, &length) != 1 ||
            std::string_view(group, length) != "prime256v1")
            throw std::invalid_argument(
                "token public key: an EC key not on P-256 (ES256 needs P-256)");
        return "ES256";
    }
    default:
        throw std::invalid_argument("token public key: neither an RSA nor an EC key");
    }
}

bool base64url_char(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/// True when `part` is base64url as an encoder writes it (no padding, the bits past the last
/// byte zero), by decoding and encoding it again with cpp-jwt. Its decoder ignores those bits
/// and a length of 4n + 1, so without this a signature would have several spellings, and one
/// token several strings, which would defeat anyone who keeps tokens by their text (a list of
/// revoked ones).
bool canonical_base64url(std::string_view part) {
    const std::string bytes = jwt::base64_uri_decode(part.data(), part.size());
    std::string again = jwt::base64_encode(bytes.data(), bytes.size());
    again.resize(jwt::base64_uri_encode(again.data(), again.size()));
    return again == part;
}

/// A NumericDate (seconds since the epoch, perhaps with a fraction) as a time_point, clamped to
/// what the clock can represent (its nanoseconds reach 2262).
std::chrono::system_clock::time_point to_time_point(double seconds) noexcept {
    constexpr double limit = 9e9; // about the year 2255
    using clock = std::chrono::system_clock;
    if (seconds >= limit)
        return clock::time_point::max();
    if (seconds <= -limit)
        return clock::time_point::min();
    return clock::time_point{
        std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds))};
}

/// The patterns of claim `name` into `out`; false when the claim is not an array of valid
/// patterns. An absent claim allows nothing.
bool read_patterns(const json& claims, const char* name, pattern_set& out) {
    const auto it = claims.find(name);
    if (it == claims.end())
        return true;
    if (!it->is_array())
        return false;
    std::vector<std::string> list;
    list.reserve(it->size());
    for (const json& p : *it) {
        if (!p.is_string())
            return false;
        list.push_back(p.get<std::string>());
    }
    auto set = pattern_set::parse(list);
    if (!set)
        return false;
    out = std::move(set).value();
    return true;
}

/// The NumericDate claim `name`: nullopt when absent, false in `ok` when not a number.
std::optional<double> read_date(const json& claims, const char* name, bool& ok) {
    const auto it = claims.find(name);
    if (it == claims.end())
        return std::nullopt;
    if (!it->is_number()) {
        ok = false;
        return std::nullopt;
    }
    return it->get<double>();
}

} // namespace

std::string_view to_string(token_error e) noexcept {
    switch (e) {
    case token_error::too_large:
        return "too_large";
    case token_error::malformed:
        return "malformed";
    case token_error::wrong_algorithm:
        return "wrong_algorithm";
    case token_error::bad_signature:
        return "bad_signature";
    case token_error::bad_claim:
        return "bad_claim";
    case token_error::missing_expiry:
        return "missing_expiry";
    case token_error::expired:
        return "expired";
    case token_error::not_yet_valid:
        return "not_yet_valid";
    }
    return "unknown";
}

token_verifier::token_verifier(token_options options)
    : options_{std::move(options)} {
    if (options_.secret.empty() && options_.public_key_pem.empty())
        throw std::invalid_argument(
            "tokens: neither a secret (HS256) nor a public key (RS256, ES256) is set");
    if (!options_.secret.empty() && options_.secret.size() < min_secret_size)
        throw std::invalid_argument("token secret: " + std::to_string(options_.secret.size()) +
                                    " bytes, HS256 needs 32 or more");
    if (options_.leeway.count() < 0)
        throw std::invalid_argument("token leeway: negative");
    if (!options_.public_key_pem.empty())
        key_algorithm_ = algorithm_of(options_.public_key_pem);
}

std::string token_verifier::algorithms() const {
    std::string list = options_.secret.empty() ? "" : "HS256";
    if (!key_algorithm_.empty())
        list += (list.empty() ? "" : ", ") + std::string(key_algorithm_);
    return list;
}

expected<token_claims, token_error>
token_verifier::verify(std::string_view token, std::chrono::system_clock::time_point now) const {
    if (token.size() > options_.max_size)
        return token_error::too_large;

    // Only base64url characters and exactly two dots reach cpp-jwt: its base64 decoder indexes
    // a 256-entry table with a plain (signed) char, so a byte over 0x7f would read outside it.
    std::size_t dots[2] = {};
    std::size_t found = 0;
    for (std::size_t i = 0; i < token.size(); ++i) {
        if (token[i] == '.') {
            if (found == 2)
                return token_error::malformed;
            dots[found++] = i;
        } else if (!base64url_char(token[i])) {
            return token_error::malformed;
        }
    }
    if (found != 2)
        return token_error::malformed;
    const std::string_view header_part = token.substr(0, dots[0]);
    const std::string_view payload_part = token.substr(dots[0] + 1, dots[1] - dots[0] - 1);
    const std::string_view signing_input = token.substr(0, dots[1]);
    const std::string_view signature = token.substr(dots[1] + 1);
    if (header_part.empty() || payload_part.empty() || !canonical_base64url(header_part) ||
        !canonical_base64url(payload_part) || !canonical_base64url(signature))
        return token_error::malformed;

    // cpp-jwt decodes both parts (base64url, JSON; the header's `alg` present, `typ` JWT if
    // given). Nothing in them is trusted before the signature is checked.
    jwt::jwt_header header;
    jwt::jwt_payload payload;
    try {
        std::error_code ec;
        header.decode(header_part, ec);
        if (ec)
            return token_error::malformed;
        payload.decode(payload_part, ec);
        if (ec)
            return token_error::malformed;
    } catch (const json::exception&) {
        // cpp-jwt reads `alg` and `typ` as strings and walks the parts as objects: a header or
        // payload of another shape throws.
        return token_error::malformed;
    }
    const json& head = header.create_json_obj();
    const json& claims = payload.create_json_obj();
    if (!head.is_object() || !claims.is_object())
        return token_error::malformed;
    // RFC 7515 4.1.11: extensions named in `crit` must be understood; we understand none.
    if (head.contains("crit"))
        return token_error::malformed;
    const auto alg = head.find("alg");
    if (alg == head.end() || !alg->is_string())
        return token_error::malformed;
    const std::string& algorithm = alg->get_ref<const std::string&>();

    // The configured keys pick the algorithm; the header only has to name it, exactly (cpp-jwt
    // would also take "hs256"). Each verification below is bound to its key's algorithm.
    {
        const openssl_errors_cleared cleared;
        if (algorithm == "HS256" && !options_.secret.empty()) {
            const auto mac = jwt::HMACSign<jwt::algo::HS256>::sign(options_.secret, signing_input);
            if (mac.second)
                return token_error::bad_signature;
            std::string expected_signature = jwt::base64_encode(mac.first.data(), mac.first.size());
            expected_signature.resize(
                jwt::base64_uri_encode(expected_signature.data(), expected_signature.size()));
            if (!constant_time_equal(signature, expected_signature))
                return token_error::bad_signature;
        } else if (!key_algorithm_.empty() && algorithm == key_algorithm_) {
            const auto verified = key_algorithm_ == "RS256"
                                      ? jwt::PEMSign<jwt::algo::RS256>::verify(
                                            options_.public_key_pem, signing_input, signature)
                                      : jwt::PEMSign<jwt::algo::ES256>::verify(
                                            options_.public_key_pem, signing_input, signature);
            if (verified.second || !verified.first)
                return token_error::bad_signature;
        } else {
            return token_error::wrong_algorithm;
        }
    }

    // The token is ours: read its claims.
    token_claims out;
    const auto sub = claims.find("sub");
    if (sub == claims.end() || !sub->is_string() || sub->get_ref<const std::string&>().empty())
        return token_error::bad_claim;
    out.subject = sub->get<std::string>();
    bool dates_ok = true;
    const std::optional<double> exp = read_date(claims, "exp", dates_ok);
    const std::optional<double> nbf = read_date(claims, "nbf", dates_ok);
    if (!dates_ok || !read_patterns(claims, "channels", out.channels) ||
        !read_patterns(claims, "publish", out.publish))
        return token_error::bad_claim;

    // exp: valid while now < exp (RFC 7519 4.1.4); nbf: valid from nbf on (4.1.5); both give
    // the issuer's clock `leeway` of skew.
    const double t = std::chrono::duration<double>(now.time_since_epoch()).count();
    const double leeway = static_cast<double>(options_.leeway.count());
    if (!exp) {
        if (options_.require_expiry)
            return token_error::missing_expiry;
    } else if (t >= *exp + leeway) {
        return token_error::expired;
    }
    if (nbf && t < *nbf - leeway)
        return token_error::not_yet_valid;
    if (exp)
        out.expires = to_time_point(*exp);
    return out;
}

} // namespace megaphone::auth
