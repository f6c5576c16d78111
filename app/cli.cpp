#include "app/cli.hpp"

#include "app/access.hpp"
#include "auth/patterns.hpp"
#include "auth/secret.hpp"

#include "cluster/forwarder.hpp"
#include "cluster/redis_bus.hpp"

#include <spdlog/logger.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

namespace megaphone {

namespace {

using kind = option_spec::kind;

[[noreturn]] void fail(std::string_view as, const std::string& what) {
    throw usage_error(std::string(as) + " " + what);
}

double number(std::string_view as, std::string_view text) {
    double value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value < 0 || !std::isfinite(value))
        fail(as, "takes a non-negative number, not '" + std::string(text) + "'");
    return value;
}

std::chrono::milliseconds seconds(std::string_view as, std::string_view text) {
    const double v = number(as, text);
    if (v > 1e9)
        fail(as, "takes at most 1e9 seconds");
    return std::chrono::milliseconds(static_cast<long long>(std::llround(v * 1000)));
}

template <class T>
T whole(std::string_view as, std::string_view text, T max) {
    const double v = number(as, text);
    if (v != std::floor(v) || v > static_cast<double>(max))
        fail(as, "takes a whole number up to " + std::to_string(max));
    return static_cast<T>(v);
}

std::string secs(std::chrono::milliseconds d) {
    std::ostringstream out;
    out << static_cast<double>(d.count()) / 1000.0;
    return out.str();
}

// Table rows: an option bound to one field of server_options.
template <class Get>
option_spec seconds_option(std::string_view name, std::string_view help, Get field) {
    return {name,
            "S",
            kind::number,
            help,
            [field](const server_options& o) { return secs(field(o)); },
            [field](server_options& o, std::string_view as, std::string_view v) {
                field(o) = seconds(as, v);
            },
            nullptr};
}

template <class T, class Get>
option_spec whole_option(std::string_view name, std::string_view value_name, std::string_view help,
                         T max, Get field) {
    return {name,
            value_name,
            kind::number,
            help,
            [field](const server_options& o) { return std::to_string(field(o)); },
            [field, max](server_options& o, std::string_view as, std::string_view v) {
                field(o) = whole<T>(as, v, max);
            },
            nullptr};
}

/// A `--no-X` flag: given (true), it turns the bool field off.
template <class Get>
option_spec turning_off(std::string_view name, std::string_view help, Get field) {
    return {name,
            "",
            kind::flag,
            help,
            [field](const server_options& o) { return std::string(field(o) ? "false" : "true"); },
            [field](server_options& o, std::string_view as, std::string_view v) {
                if (v != "true" && v != "false")
                    fail(as, "takes true or false");
                field(o) = v != "true";
            },
            nullptr};
}

template <class Get>
option_spec text_option(std::string_view name, std::string_view value_name, std::string_view help,
                        Get field) {
    return {name,
            value_name,
            kind::text,
            help,
            [field](const server_options& o) { return std::string(field(o)); },
            [field](server_options& o, std::string_view, std::string_view v) { field(o) = v; },
            nullptr};
}

/// A secret given as a file (auth::read_secret_file: trailing newlines trimmed; refused when
/// others may read it or the group may write it), so that it stays out of `ps`.
template <class Get>
option_spec secret_file_option(std::string_view name, std::string_view help, Get field) {
    return {name,
            "FILE",
            kind::text,
            help,
            [](const server_options&) { return std::string(); },
            [field](server_options& o, std::string_view as, std::string_view v) {
                if (v.empty())
                    return;
                auto secret = auth::read_secret_file(std::string(v));
                if (!secret)
                    fail(as, std::string(v) + ": " + secret.error().message());
                field(o) = std::move(secret.value());
            },
            nullptr};
}

// Adding an option: one row here (the command line, --config and --help follow), its default
// in examples/megaphone.json (tests/app/test_cli.cpp checks that the file names every option),
// and any check that spans options in validate().
std::vector<option_spec> make_table() {
    using o_t = server_options;
    std::vector<option_spec> t;
    t.push_back(text_option(
        "address", "ADDR", "listen address", [](auto& o) -> auto& { return o.address; }));
    t.push_back(whole_option<unsigned short>(
        "port", "N", "listen port; 0 picks a free one and prints it", 65535,
        [](auto& o) -> auto& { return o.port; }));
    t.push_back({"tls-cert", "FILE", kind::text,
                 "serve HTTPS too, with this PEM certificate chain (off when empty)",
                 [](const o_t& o) { return o.tls_cert.string(); },
                 [](o_t& o, std::string_view, std::string_view v) { o.tls_cert = v; }, nullptr});
    t.push_back({"tls-key", "FILE", kind::text,
                 "the certificate's PEM private key (empty: the tls-cert file)",
                 [](const o_t& o) { return o.tls_key.string(); },
                 [](o_t& o, std::string_view, std::string_view v) { o.tls_key = v; }, nullptr});
    t.push_back(whole_option<unsigned short>(
        "tls-port", "N",
        "HTTPS listen port, next to the HTTP one; 0: a free "
        "one",
        65535, [](auto& o) -> auto& { return o.tls_port; }));
    t.push_back(whole_option<unsigned>(
        "threads", "N", "I/O threads, one session shard each; 0: one per core", 36,
        [](auto& o) -> auto& { return o.threads; }));
    t.push_back(
        {"placement", "POLICY", kind::text,
         "which thread takes a new connection: fill (the first thread until it is busy "
         "and a core is spare, then all) or spread (round robin)",
         [](const o_t& o) {
             return std::string(o.placement.policy == placement_policy::fill ? "fill" : "spread");
         },
         [](o_t& o, std::string_view as, std::string_view v) {
             if (v != "fill" && v != "spread")
                 fail(as, "takes fill or spread, not '" + std::string(v) + "'");
             o.placement.policy = v == "fill" ? placement_policy::fill : placement_policy::spread;
         },
         nullptr});
    t.push_back(seconds_option(
        "wait", "longest a request is held, seconds (caps the client's)",
        [](auto& o) -> auto& { return o.engine.max_wait; }));
    t.push_back(whole_option<std::uint16_t>(
        "hold", "N", "most requests held at once per session", 16,
        [](auto& o) -> auto& { return o.engine.max_hold; }));
    t.push_back(seconds_option(
        "inactivity", "a session with no request held this long is closed",
        [](auto& o) -> auto& { return o.engine.inactivity; }));
    t.push_back(seconds_option(
        "heartbeat", "a ping event on an idle Server-Sent Events stream every this many seconds",
        [](auto& o) -> auto& { return o.sse.heartbeat; }));
    t.push_back(seconds_option(
        "polling",
        "shortest interval between empty polls of a polling "
        "session",
        [](auto& o) -> auto& { return o.engine.polling; }));
    t.push_back(whole_option<std::size_t>(
        "max-body", "BYTES", "largest request body; larger gets 413", std::size_t{1} << 30,
        [](auto& o) -> auto& { return o.http.max_body; }));
    t.push_back(whole_option<std::uint32_t>(
        "max-queue", "N", "packets queued per session; one more closes it (policy-violation)",
        1u << 24, [](auto& o) -> auto& { return o.engine.max_queue; }));
    t.push_back(whole_option<std::size_t>(
        "max-sessions", "N", "sessions at once; more get policy-violation; 0: no limit",
        std::size_t{1} << 32, [](auto& o) -> auto& { return o.engine.max_sessions; }));
    t.push_back(whole_option<std::uint32_t>(
        "creation-burst", "N",
        "session creations at once per client address, then creation-rate per second; "
        "beyond: 429; 0: no limit",
        1u << 30, [](auto& o) -> auto& { return o.creation_burst; }));
    t.push_back(
        {"creation-rate", "R", kind::number,
         "session creations per second per client address, after the burst",
         [](const o_t& o) {
             std::ostringstream out;
             out << o.creation_rate;
             return out.str();
         },
         [](o_t& o, std::string_view as, std::string_view v) { o.creation_rate = number(as, v); },
         nullptr});
    t.push_back(whole_option<std::size_t>(
        "max-connections", "N",
        "open connections; more get 503 and are closed; 0: the open-file limit minus 128",
        std::size_t{1} << 32, [](auto& o) -> auto& { return o.http.max_connections; }));
    t.push_back(seconds_option(
        "read-timeout", "time to receive a whole request from its first byte (slowloris cut-off)",
        [](auto& o) -> auto& { return o.http.read_timeout; }));
    t.push_back(seconds_option(
        "drain", "on SIGTERM/SIGINT, longest wait for the last answers to go out",
        [](auto& o) -> auto& { return o.drain; }));
    t.push_back(seconds_option(
        "idle-timeout",
        "a connection with no request in flight is closed after S (a held long-poll is in "
        "flight)",
        [](auto& o) -> auto& { return o.http.idle_timeout; }));
    t.push_back({"static-dir", "DIR", kind::text, "serve files from DIR for GET (none when empty)",
                 [](const o_t& o) { return o.static_dir.string(); },
                 [](o_t& o, std::string_view, std::string_view v) { o.static_dir = v; }, nullptr});
    t.push_back(
        {"cors-origin", "ORIGIN", kind::list, "allowed CORS origin, repeatable; '*' allows any",
         [](const o_t& o) {
             std::string s;
             for (const auto& origin : o.http.cors_origins)
                 s += (s.empty() ? "" : ",") + origin;
             return s;
         },
         [](o_t& o, std::string_view, std::string_view v) { o.http.cors_origins.emplace_back(v); },
         [](o_t& o) { o.http.cors_origins.clear(); }});
    t.push_back({"reuse-port", "", kind::flag,
                 "SO_REUSEPORT: several processes (each its own --node-id, joined by --redis) "
                 "listen on one port; the kernel spreads connections among them",
                 [](const o_t& o) { return std::string(o.http.reuse_port ? "true" : "false"); },
                 [](o_t& o, std::string_view as, std::string_view v) {
                     if (v != "true" && v != "false")
                         fail(as, "takes true or false");
                     o.http.reuse_port = v == "true";
                 },
                 nullptr});
    t.push_back(turning_off(
        "no-handover",
        "with --reuse-port: relay requests of sessions of this machine's other processes over "
        "HTTP instead of handing their connections over (SCM_RIGHTS); for comparison, or where "
        "Unix sockets are barred",
        [](auto& o) -> auto& { return o.handover; }));
    t.push_back(turning_off(
        "no-thread-moves",
        "keep each connection on the thread that accepted it, even when it carries requests of "
        "a session of another thread (each then costs two hops between threads); for comparison",
        [](auto& o) -> auto& { return o.move_connections; }));
    t.push_back(whole_option(
        "node-port", "PORT",
        "with --reuse-port: this process's own port, where other nodes forward requests for its "
        "sessions (0: a free one)",
        std::uint16_t{65535}, [](auto& o) -> auto& { return o.node_port; }));
    t.push_back({"redis", "URL", kind::list,
                 "join a cluster through Redis (redis://host:port/db); repeatable: channels are "
                 "spread over the servers by a stable hash. None: one process, no Redis",
                 [](const o_t& o) {
                     std::string s;
                     for (const auto& url : o.redis)
                         s += (s.empty() ? "" : ",") + url;
                     return s;
                 },
                 [](o_t& o, std::string_view as, std::string_view v) {
                     if (!redis::parse_url(v))
                         fail(as, "takes redis://host[:port][/db], not '" + std::string(v) + "'");
                     o.redis.emplace_back(v);
                 },
                 [](o_t& o) { o.redis.clear(); }});
    t.push_back(whole_option(
        "history-size", "N", "messages kept per channel for recovery (0: none)",
        std::size_t{1} << 20, [](auto& o) -> auto& { return o.history.history_size; }));
    t.push_back({"history-ttl", "S", kind::number,
                 "how long a channel's messages are kept for recovery, and how long a channel "
                 "with no publish keeps its position (then a new epoch starts)",
                 [](const o_t& o) { return std::to_string(o.history.history_ttl.count()); },
                 [](o_t& o, std::string_view as, std::string_view v) {
                     o.history.history_ttl =
                         std::chrono::seconds(whole<std::int64_t>(as, v, std::int64_t{1} << 31));
                 },
                 nullptr});
    t.push_back(text_option(
        "node-id", "ID", "session id prefix, for routing across servers",
        [](auto& o) -> auto& { return o.engine.node_id; }));
    // The key is never shown (--help, errors): neither option echoes a value.
    t.push_back({"cluster-key", "KEY", kind::text,
                 "secret shared by the nodes (16+ characters): with --redis, requests for "
                 "sessions of other nodes are forwarded to them carrying it; prefer "
                 "--cluster-key-file (ps shows arguments). None: no forwarding",
                 [](const o_t&) { return std::string(); },
                 [](o_t& o, std::string_view, std::string_view v) { o.cluster_key = v; }, nullptr});
    t.push_back({"cluster-key-file", "FILE", kind::text,
                 "read --cluster-key from the first line of FILE",
                 [](const o_t&) { return std::string(); },
                 [](o_t& o, std::string_view as, std::string_view v) {
                     if (v.empty())
                         return;
                     std::ifstream in{std::string(v)};
                     std::string key;
                     if (!in || !std::getline(in, key))
                         fail(as, "cannot read " + std::string(v));
                     while (!key.empty() && (key.back() == '\r' || key.back() == ' '))
                         key.pop_back();
                     if (key.empty())
                         fail(as, std::string(v) + " starts with an empty line");
                     o.cluster_key = std::move(key);
                 },
                 nullptr});
    t.push_back({"advertise", "HOST:PORT", kind::text,
                 "where the other nodes reach this one for forwarded requests (empty: the "
                 "listen address and port)",
                 [](const o_t& o) { return o.advertise; },
                 [](o_t& o, std::string_view as, std::string_view v) {
                     const auto colon = v.rfind(':');
                     if (!v.empty() &&
                         (colon == std::string_view::npos || colon == 0 || colon + 1 == v.size() ||
                          v.find_first_not_of("0123456789", colon + 1) != std::string_view::npos))
                         fail(as, "takes HOST:PORT, not '" + std::string(v) + "'");
                     o.advertise = v;
                 },
                 nullptr});
    t.push_back({"log-level", "LEVEL", kind::text, "trace, debug, info, warn, error or off",
                 [](const o_t& o) { return std::string(to_string(o.log.level)); },
                 [](o_t& o, std::string_view as, std::string_view v) {
                     auto level = parse_log_level(v);
                     if (!level)
                         fail(as, "takes trace, debug, info, warn, error or off, not '" +
                                      std::string(v) + "'");
                     o.log.level = *level;
                 },
                 nullptr});
    t.push_back(text_option(
        "access-log", "FILE", "one line per HTTP request to FILE ('-': stdout; none when empty)",
        [](auto& o) -> auto& { return o.log.access_log; }));
    t.push_back(text_option(
        "admin-token", "TOKEN",
        "turns on the /admin dashboard: open /admin?token=TOKEN once, its requests then carry "
        "the X-Megaphone-Token header; prefer --admin-token-file (ps shows arguments). None: "
        "/admin is 404",
        [](auto& o) -> auto& { return o.admin_token; }));
    t.push_back(secret_file_option(
        "admin-token-file", "read --admin-token from FILE",
        [](auto& o) -> auto& { return o.admin_token; }));
    t.push_back(text_option(
        "internal-address", "ADDR",
        "the internal door: POST /publish without a key and GET /metrics "
        "without a token (keep it private: loopback or an internal network)",
        [](auto& o) -> auto& { return o.internal_address; }));
    t.push_back(whole_option<unsigned short>(
        "internal-port", "N", "the internal door's port; 0 picks a free one", 65535,
        [](auto& o) -> auto& { return o.internal_port; }));
    t.push_back(text_option(
        "publish-key", "KEY",
        "serves POST /publish on the public port too, to requests with "
        "Authorization: Bearer KEY (401 otherwise); prefer "
        "--publish-key-file (ps shows arguments). None: publishing is on "
        "the internal door only",
        [](auto& o) -> auto& { return o.keys.publish_key; }));
    t.push_back(secret_file_option(
        "publish-key-file", "read --publish-key from FILE",
        [](auto& o) -> auto& { return o.keys.publish_key; }));
    t.push_back(text_option(
        "metrics-token", "KEY",
        "GET /metrics on the public port only with Authorization: Bearer "
        "KEY (the internal door serves it always). None: open",
        [](auto& o) -> auto& { return o.keys.metrics_token; }));
    t.push_back(secret_file_option(
        "metrics-token-file", "read --metrics-token from FILE",
        [](auto& o) -> auto& { return o.keys.metrics_token; }));
    t.push_back(text_option(
        "token-secret", "KEY",
        "verify client tokens (JWT, HS256) with this secret, 32 bytes or "
        "more; prefer --token-secret-file",
        [](auto& o) -> auto& { return o.clients.token_secret; }));
    t.push_back(secret_file_option(
        "token-secret-file", "read --token-secret from FILE",
        [](auto& o) -> auto& { return o.clients.token_secret; }));
    t.push_back({"token-public-key", "FILE", kind::text,
                 "verify client tokens (JWT, RS256 or ES256) with the public key in FILE (PEM)",
                 [](const o_t&) { return std::string(); },
                 [](o_t& o, std::string_view as, std::string_view v) {
                     if (v.empty())
                         return;
                     std::ifstream in{std::string(v)};
                     std::ostringstream pem;
                     pem << in.rdbuf();
                     if (!in || pem.str().empty())
                         fail(as, "cannot read " + std::string(v));
                     o.clients.token_public_key = pem.str();
                 },
                 nullptr});
    t.push_back(
        {"require-token", "", kind::flag, "refuse sessions without a valid token (not-authorized)",
         [](const o_t& o) { return std::string(o.clients.require_token ? "true" : "false"); },
         [](o_t& o, std::string_view as, std::string_view v) {
             if (v != "true" && v != "false")
                 fail(as, "takes true or false");
             o.clients.require_token = v == "true";
         },
         nullptr});
    t.push_back(text_option(
        "private-prefix", "PREFIX",
        "channels a session without a token may not subscribe to ('': none)",
        [](auto& o) -> auto& { return o.clients.private_prefix; }));
    t.push_back({"client-publish-rate", "R", kind::number,
                 "publishes per second one session may make through the hub (a token bucket "
                 "of --client-publish-burst); beyond it {\"error\": \"rate-limited\"}",
                 [](const o_t& o) {
                     std::ostringstream out;
                     out << o.clients.publish_rate;
                     return out.str();
                 },
                 [](o_t& o, std::string_view as, std::string_view v) {
                     o.clients.publish_rate = number(as, v);
                 },
                 nullptr});
    t.push_back(whole_option<std::uint32_t>(
        "client-publish-burst", "N", "publishes a session may make at once (0: no limit)",
        1'000'000, [](auto& o) -> auto& { return o.clients.publish_burst; }));
    t.push_back({"client-publish", "PATTERN", kind::list,
                 "where sessions without a token may publish: channel names or prefix*, "
                 "repeatable; '*' anywhere. (A token's own `publish` claim applies to its "
                 "session.)",
                 [](const o_t& o) {
                     std::string s;
                     for (const auto& p : o.clients.client_publish)
                         s += (s.empty() ? "" : ",") + p;
                     return s;
                 },
                 [](o_t& o, std::string_view as, std::string_view v) {
                     if (auto bad = auth::pattern_set::check(v))
                         fail(as,
                              "'" + std::string(v) + "': " + std::string(auth::to_string(*bad)));
                     o.clients.client_publish.emplace_back(v);
                 },
                 [](o_t& o) { o.clients.client_publish.clear(); }});
    t.push_back(text_option(
        "auth-url", "URL",
        "the hub asks http://host[:port]/path whether a session may subscribe or publish: "
        "POST {sid, user, channel, action}; 200 allows, 403 denies, anything else or no "
        "answer in --auth-timeout denies. It then decides instead of the token patterns, "
        "--private-prefix and --client-publish",
        [](auto& o) -> auto& { return o.clients.hook.url; }));
    t.push_back(seconds_option(
        "auth-timeout", "longest wait for --auth-url's answer",
        [](auto& o) -> auto& { return o.clients.hook.timeout; }));
    t.push_back(seconds_option(
        "auth-cache", "how long --auth-url's allows and denies are remembered (0: never)",
        [](auto& o) -> auto& { return o.clients.hook.cache_for; }));
    return t;
}

const option_spec* find_option(std::string_view name) {
    for (const auto& spec : option_table())
        if (spec.name == name)
            return &spec;
    return nullptr;
}

/// A secret given both as itself and as its file (`--X` and `--X-file`) in one place, the
/// command line or the configuration, is refused: which one was meant is not clear. `given`:
/// the names given a non-empty value there; `dashes`: "--" on the command line.
void refuse_secret_twice(const std::vector<std::string>& given, std::string_view dashes,
                         std::string_view where) {
    for (const std::string_view name : given) {
        if (!name.ends_with("-file"))
            continue;
        const std::string_view inline_name = name.substr(0, name.size() - 5);
        if (std::find(given.begin(), given.end(), inline_name) != given.end())
            throw usage_error(std::string(dashes) + std::string(inline_name) + " and " +
                              std::string(dashes) + std::string(name) + " set the same secret " +
                              std::string(where) + ": give one of them");
    }
}

std::string_view type_name(kind k) {
    switch (k) {
    case kind::text:
        return "a string";
    case kind::number:
        return "a number";
    case kind::list:
        return "an array of strings";
    case kind::flag:
        return "true or false";
    }
    return "?";
}

} // namespace

const std::vector<option_spec>& option_table() {
    static const std::vector<option_spec> table = make_table();
    return table;
}

void apply_config(server_options& o, const nlohmann::json& config) {
    if (!config.is_object())
        throw usage_error("the configuration must be a JSON object of option names");
    std::vector<std::string> set_keys;
    for (const auto& [key, value] : config.items())
        if (!(value.is_string() && value.get_ref<const std::string&>().empty()))
            set_keys.push_back(key);
    refuse_secret_twice(set_keys, "", "in the configuration");
    for (const auto& [key, value] : config.items()) {
        const option_spec* spec = find_option(key);
        if (!spec)
            throw usage_error("unknown configuration key \"" + key + "\"");
        const std::string as = "configuration key \"" + key + "\"";
        const auto wrong_type = [&] { fail(as, "takes " + std::string(type_name(spec->type))); };
        switch (spec->type) {
        case kind::text:
            if (!value.is_string())
                wrong_type();
            spec->set(o, as, value.get_ref<const std::string&>());
            break;
        case kind::number:
            if (!value.is_number())
                wrong_type();
            spec->set(o, as, value.dump());
            break;
        case kind::flag:
            if (!value.is_boolean())
                wrong_type();
            spec->set(o, as, value.get<bool>() ? "true" : "false");
            break;
        case kind::list:
            if (!value.is_array())
                wrong_type();
            for (const auto& item : value)
                if (!item.is_string())
                    wrong_type();
            spec->clear(o);
            for (const auto& item : value)
                spec->set(o, as, item.get_ref<const std::string&>());
            break;
        }
    }
}

void apply_config_file(server_options& o, const std::string& path) {
    std::ifstream in{path};
    if (!in)
        throw usage_error("cannot read the configuration file " + path);
    nlohmann::json config;
    try {
        config = nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
    } catch (const nlohmann::json::exception& e) {
        // Without the parser's "last read: '...'": it may be a secret's value.
        std::string why = e.what();
        why = why.substr(0, why.find("; last read"));
        throw usage_error("the configuration file " + path + " is not valid JSON: " + why);
    }
    apply_config(o, config);
}

void validate(const server_options& o) {
    if (o.engine.max_queue == 0)
        throw usage_error("max-queue must be at least 1");
    if (o.creation_burst != 0 && o.creation_rate <= 0)
        throw usage_error("creation-rate must be above 0 (or creation-burst 0: no limit)");
    if (o.http.read_timeout.count() <= 0 || o.http.idle_timeout.count() <= 0)
        throw usage_error("read-timeout and idle-timeout must be above 0");
    if (o.engine.node_id.empty() || o.engine.node_id.size() > 6 ||
        o.engine.node_id.find('-') != std::string::npos)
        throw usage_error("node-id takes 1 to 6 characters, no '-'");
    if (o.tls_cert.empty() && !o.tls_key.empty())
        throw usage_error("tls-key needs tls-cert");
    if (!o.tls_cert.empty() && o.tls_port == o.port && o.port != 0)
        throw usage_error("tls-port must differ from port");
    if (!o.static_dir.empty() && !std::filesystem::is_directory(o.static_dir))
        throw usage_error("static-dir " + o.static_dir.string() + " is not a directory");
    if (o.history.history_ttl.count() < 1)
        throw usage_error("history-ttl must be at least 1 second");
    if (!o.cluster_key.empty() && o.cluster_key.size() < 16)
        throw usage_error("cluster-key takes at least 16 characters");
    try {
        make_session_rules(o.clients); // a bad token key or pattern: said now, by option
    } catch (const std::invalid_argument& e) {
        throw usage_error(e.what());
    }
}

server_options cli_defaults() {
    server_options o;
    o.internal_port = 9080;
    o.clients.client_publish.clear(); // sessions without a token publish nowhere unless asked
    return o;
}

parsed_command_line parse_arguments(const std::vector<std::string_view>& args) {
    parsed_command_line result;
    result.options = cli_defaults();
    std::string config;
    std::vector<std::pair<const option_spec*, std::string_view>> given;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string_view arg = args[i];
        if (arg == "--help" || arg == "-h") {
            result.help = true;
            return result;
        }
        // Errors name options, never a value: it may be a secret (--admin-token=T, or one
        // whose option was mistyped).
        if (!arg.starts_with("--"))
            throw usage_error("unexpected argument (number " + std::to_string(i + 1) +
                              "): every option starts with --, its value follows it");
        const std::string_view name = arg.substr(2);
        if (name.find('=') != std::string_view::npos)
            throw usage_error("--" + std::string(name.substr(0, name.find('='))) +
                              "=VALUE: give the value as the next argument, not after '='");
        const option_spec* spec = name == "config" ? nullptr : find_option(name);
        if (name != "config" && !spec)
            throw usage_error("unknown option " + std::string(arg));
        if (spec && spec->type == kind::flag) {
            given.emplace_back(spec, "true");
            continue;
        }
        if (i + 1 >= args.size())
            throw usage_error(std::string(arg) + " needs a value");
        const std::string_view value = args[++i];
        if (spec)
            given.emplace_back(spec, value);
        else
            config = value;
    }
    std::vector<std::string> set_names;
    for (const auto& [spec, value] : given)
        if (!value.empty())
            set_names.emplace_back(spec->name);
    refuse_secret_twice(set_names, "--", "on the command line");
    // The file first, then the command line over it: the command line wins wherever it stands.
    if (!config.empty())
        apply_config_file(result.options, config);
    std::vector<const option_spec*> cleared;
    for (const auto& [spec, value] : given) {
        if (spec->clear && std::find(cleared.begin(), cleared.end(), spec) == cleared.end()) {
            spec->clear(result.options);
            cleared.push_back(spec);
        }
        spec->set(result.options, "--" + std::string(spec->name), value);
    }
    validate(result.options);
    return result;
}

void print_help(std::FILE* out, std::string_view about) {
    const server_options defaults = cli_defaults();
    std::size_t width = std::string_view("--config FILE").size();
    for (const auto& spec : option_table())
        width = std::max(width, spec.name.size() + spec.value_name.size() + 3);
    // Help text wrapped at 100 columns, continuation lines under the first.
    const auto line = [&](std::string_view name, std::string_view value_name, std::string_view help,
                          const std::string* shown) {
        std::string left = "--" + std::string(name);
        if (!value_name.empty())
            left += " " + std::string(value_name);
        std::string text(help);
        if (shown)
            text += " [" + *shown + "]";
        const std::size_t room = std::max<std::size_t>(40, 100 - width - 4);
        std::string_view rest = text;
        bool first = true;
        while (!rest.empty()) {
            std::size_t cut = rest.size();
            if (cut > room) {
                cut = rest.rfind(' ', room);
                if (cut == std::string_view::npos || cut == 0)
                    cut = std::min(rest.find(' '), rest.size());
            }
            std::fprintf(out, "  %-*s  %.*s\n", static_cast<int>(width), first ? left.c_str() : "",
                         static_cast<int>(cut), rest.data());
            first = false;
            rest.remove_prefix(cut);
            while (!rest.empty() && rest.front() == ' ')
                rest.remove_prefix(1);
        }
    };
    std::fprintf(out, "%.*s\n\nOptions (defaults in brackets):\n", static_cast<int>(about.size()),
                 about.data());
    for (const auto& spec : option_table()) {
        const std::string shown = spec.shown(defaults);
        line(spec.name, spec.value_name, spec.help, &shown);
    }
    line("config", "FILE",
         "JSON file of options, keyed by their names (examples/megaphone.json); the command "
         "line wins",
         nullptr);
    line("help", "", "this text", nullptr);
}

void use_redis(server_options& o) {
    if (o.redis.empty())
        return;
    redis_bus_options bus;
    for (const auto& url : o.redis)
        bus.servers.push_back(redis::parse_url(url).value());
    // Forwarding (cluster/forwarder.hpp): its counters join the bus's metrics.
    auto stats = std::make_shared<forwarding_stats>();
    o.make_bus = [bus, stats](net::io_context& ioc, const bus_options& history) {
        return with_forwarding_metrics(std::make_unique<redis_bus>(ioc, bus, history), stats);
    };
    o.make_router = [registry = bus.servers.front(), stats](net::io_context& ioc,
                                                            const server_options& so) {
        forwarding_router_options f;
        f.node_id = so.engine.node_id;
        f.cluster_key = so.cluster_key;
        f.advertise = so.advertise;
        f.listen_address = so.address;
        f.forward.timeout = so.engine.max_wait + std::chrono::seconds(10);
        f.handover = so.http.reuse_port && so.handover;
        f.log = [](bool warning, const std::string& line) {
            if (warning)
                logger().warn("{}", line);
            else
                logger().info("{}", line);
        };
        return make_forwarding_router(ioc, registry, std::move(f), stats);
    };
}

server_options parse_command_line(int argc, char** argv, std::string_view about) {
    std::vector<std::string_view> args(argv + 1, argv + argc);
    try {
        auto parsed = parse_arguments(args);
        if (parsed.help) {
            print_help(stdout, about);
            std::exit(0);
        }
        use_redis(parsed.options);
        return std::move(parsed.options);
    } catch (const usage_error& e) {
        std::cerr << "megaphone: " << e.what() << " (see --help)\n";
        std::exit(2);
    }
}

int serve_until_signalled(server& srv) {
    try {
        srv.start();
    } catch (const std::exception& e) {
        logger().error("cannot start: {}", e.what());
        return 1;
    }
    // The internal door first: a script that waits for "listening on" has seen it by then.
    std::printf("megaphone: internal door on http://%s:%u (POST /publish, GET /metrics)\n",
                srv.options().internal_address.c_str(), srv.internal_port());
    std::printf("megaphone: listening on http://%s:%u\n", srv.options().address.c_str(),
                srv.port());
    if (srv.tls_port() != 0)
        std::printf("megaphone: listening on https://%s:%u\n", srv.options().address.c_str(),
                    srv.tls_port());
    std::fflush(stdout);

    net::io_context signals_ioc;
    net::signal_set signals{signals_ioc, SIGINT, SIGTERM};
    int received = 0;
    signals.async_wait([&received](beast::error_code, int signal) { received = signal; });
    signals_ioc.run(); // returns after the first signal
    logger().info("signal {} received: stopping", received);
    // Graceful: the port is free at once (a new server may bind it), held requests are
    // answered system-shutdown, and the answers go out within --drain.
    srv.stop_accepting();
    std::printf("megaphone: stopping; no longer accepting\n");
    std::fflush(stdout);
    srv.stop();
    srv.wait();
    std::printf("megaphone: stopped\n");
    std::fflush(stdout);
    return 0;
}

} // namespace megaphone
