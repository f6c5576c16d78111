#include "cluster/router.hpp"

#include "auth/secret.hpp"

namespace megaphone {

namespace {
/// The field's value, or nullopt; a field given twice counts as given with an empty value (a
/// key cannot be smuggled in a second copy).
std::optional<std::string_view> field(const http::request<http::string_body>& req,
                                      std::string_view name) noexcept {
    const beast::string_view n{name.data(), name.size()};
    const auto count = req.count(n);
    if (count == 0)
        return std::nullopt;
    if (count > 1)
        return std::string_view{};
    const auto v = req.find(n)->value();
    return std::string_view{v.data(), v.size()};
}
} // namespace

internal_request check_internal(const http::request<http::string_body>& req,
                                std::string_view key) noexcept {
    const auto by = field(req, forwarded_by_header);
    const auto given = field(req, cluster_key_header);
    if (!by && !given)
        return internal_request::none;
    if (key.empty() || !given)
        return internal_request::refused;
    // Compared in constant time: neither the key's bytes nor its length show in timing.
    return auth::constant_time_equal(*given, key) ? internal_request::admitted
                                                  : internal_request::refused;
}

bool forwarded(const http::request<http::string_body>& req) noexcept {
    return req.count(beast::string_view{forwarded_by_header.data(), forwarded_by_header.size()}) >
           0;
}

} // namespace megaphone
