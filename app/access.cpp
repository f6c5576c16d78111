#include "app/access.hpp"

#include "auth/secret.hpp"
#include "fsm/metrics.hpp"

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

} // namespace megaphone
