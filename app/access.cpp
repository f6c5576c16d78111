#include "app/access.hpp"

#include "auth/secret.hpp"

#include "fsm/metrics.hpp"
#include <stdexcept>

namespace megaphone {

namespace {

response unauthorized() {
    count_refusal(refusal::unauthorized);
    response r{401, content_kind::json,
               packet::from("{\"error\":\"unauthorized: Authorization: Bearer <key> needed\"}")};
    r.headers = packet::from("WWW-Authenticate: Bearer realm=\"megaphone\"\r\n");
    return r;
}

} // namespace

bool bearer_matches(const http::request<http::string_body>& req, std::string_view key) noexcept {
    if (key.empty() || req.count(http::field::authorization) != 1)
        return false;
    const auto value = req[http::field::authorization];
    const std::string_view v{value.data(), value.size()};
    constexpr std::string_view scheme = "Bearer ";
    if (v.size() <= scheme.size() || !beast::iequals(v.substr(0, scheme.size()), scheme))
        return false;
    return auth::constant_time_equal(v.substr(scheme.size()), key);
}

std::optional<response> check_access(route_access kind, const incoming& in,
                                     const access_keys& keys) {
    if (kind == route_access::open || in.internal)
        return std::nullopt;
    if (kind == route_access::publisher) {
        if (keys.publish_key.empty())
            return response{404, content_kind::text, packet::from("not found\n")};
        if (!bearer_matches(in.request, keys.publish_key))
            return unauthorized();
        return std::nullopt;
    }
    // metrics
    if (!keys.metrics_token.empty() && !bearer_matches(in.request, keys.metrics_token))
        return unauthorized();
    return std::nullopt;
}

std::shared_ptr<const session_rules> make_session_rules(const client_rules_options& o) {
    auto rules = std::make_shared<session_rules>();
    if (!o.token_secret.empty() || !o.token_public_key.empty()) {
        auth::token_options t;
        t.secret = o.token_secret;
        t.public_key_pem = o.token_public_key;
        t.leeway = rules->leeway;
        rules->tokens = std::make_shared<const auth::token_verifier>(std::move(t));
    }
    if (o.require_token && !rules->tokens)
        throw std::invalid_argument("require-token needs --token-secret or --token-public-key");
    rules->require_token = o.require_token;
    rules->private_prefix = o.private_prefix;
    auto publish = auth::pattern_set::parse(o.client_publish);
    if (!publish)
        throw std::invalid_argument("client-publish: pattern '" +
                                    o.client_publish[publish.error().index] +
                                    "': " + std::string(auth::to_string(publish.error().error)));
    rules->client_publish = std::move(publish.value());
    if (o.publish_burst != 0 && !(o.publish_rate > 0))
        throw std::invalid_argument(
            "client-publish-rate must be above 0 (or client-publish-burst 0: no limit)");
    rules->publish_rate = o.publish_rate;
    rules->publish_burst = o.publish_burst;
    return rules;
}

const session_rules& rules_or_defaults(const std::shared_ptr<const session_rules>& rules) noexcept {
    static const session_rules defaults;
    return rules ? *rules : defaults;
}

token_outcome check_token(const session_rules& rules, std::string_view token, bool required) {
    token_outcome out;
    if (token.empty()) {
        out.refused = required;
        out.why = "missing";
        return out;
    }
    if (!rules.tokens) {
        out.refused = true;
        out.why = "tokens are not configured";
        return out;
    }
    auto claims = rules.tokens->verify(token, rules.now());
    if (!claims) {
        out.refused = true;
        out.why = auth::to_string(claims.error());
        return out;
    }
    out.claims = std::make_unique<auth::token_claims>(std::move(claims.value()));
    return out;
}

} // namespace megaphone
