#include "app/redact.hpp"

#include "transport/static_files.hpp"

#include <algorithm>
#include <array>

namespace megaphone {

namespace {

// Normalized: lower case, '_' for '-'.
constexpr std::array<std::string_view, 18> credential_names{
    "token",         "access_token", "refresh_token", "id_token", "jwt",         "auth",
    "authorization", "key",          "api_key",       "apikey",   "publish_key", "metrics_token",
    "admin_token",   "cluster_key",  "secret",        "password", "signature",   "sid"};

/// `name` percent-decoded (as it is when malformed), in lower case, with '_' for '-'.
std::string normalized(std::string_view name) {
    std::string out = percent_decode(name).value_or(std::string(name));
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
        else if (c == '-')
            c = '_';
    return out;
}

} // namespace

bool is_credential_parameter(std::string_view name) {
    const std::string n = normalized(name);
    return std::find(credential_names.begin(), credential_names.end(), n) != credential_names.end();
}

std::string redact_target(std::string_view target) {
    const auto q = target.find('?');
    if (q == std::string_view::npos)
        return std::string(target);
    std::string out{target.substr(0, q + 1)};
    out.reserve(target.size());
    std::string_view rest = target.substr(q + 1);
    for (;;) {
        const auto end = rest.find_first_of("&;?");
        const std::string_view pair = rest.substr(0, end);
        const auto eq = pair.find('=');
        if (eq != std::string_view::npos && is_credential_parameter(pair.substr(0, eq))) {
            out += pair.substr(0, eq + 1);
            out += redacted;
        } else {
            out += pair;
        }
        if (end == std::string_view::npos)
            return out;
        out += rest[end];
        rest.remove_prefix(end + 1);
    }
}

} // namespace megaphone
