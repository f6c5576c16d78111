#include "app/admin.hpp"

#include "app/metrics.hpp"
#include "app/server.hpp"
#include "app/session.hpp"
#include "auth/secret.hpp"
#include "transport/json_codec.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace megaphone {

namespace admin_assets {
std::string_view embedded_file(std::string_view name); // generated: cmake/embed.cmake
}

namespace {

/// The value of `name` in the query string of `target` (not percent-decoded), or nullopt.
std::optional<std::string_view> query_param(std::string_view target, std::string_view name) {
    const auto q = target.find('?');
    if (q == std::string_view::npos)
        return std::nullopt;
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        const auto amp = rest.find('&');
        const std::string_view pair = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == name)
            return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    return std::nullopt;
}

std::size_t number_param(std::string_view target, std::string_view name, std::size_t fallback,
                         std::size_t max) {
    const auto text = query_param(target, name);
    std::size_t v = fallback;
    if (text)
        std::from_chars(text->data(), text->data() + text->size(), v);
    return std::min(v, max);
}

/// The page's own address: its HTML holds no data, so it is served without the token.
bool is_page(std::string_view path) {
    return path == "/admin" || path == "/admin/";
}

/// Paths that need the token in the header: everything under /admin/ that serves data (the
/// sessions table, the comet mount and its "/<node id>" form) but the public assets.
bool needs_header(std::string_view path) {
    return path.starts_with("/admin/") && !path.starts_with("/admin/assets/") && !is_page(path);
}

response asset(std::string_view name) {
    const std::string_view bytes = admin_assets::embedded_file(name);
    if (bytes.empty())
        return {404, content_kind::text, packet::from("not found\n")};
    content_kind kind = content_kind::text;
    if (name.ends_with(".html"))
        kind = content_kind::html;
    else if (name.ends_with(".js"))
        kind = content_kind::javascript;
    else if (name.ends_with(".svg"))
        kind = content_kind::svg;
    return {200, kind, packet::from(bytes)};
}

} // namespace

std::string to_string(const peer_address& a) {
    char text[INET6_ADDRSTRLEN] = {};
    if (!::inet_ntop(a.v6 ? AF_INET6 : AF_INET, a.bytes.data(), text, sizeof text))
        return "?";
    // Appended in place: GCC 12 at -O3 warns (-Wrestrict, a false positive) on "[" + string.
    std::string out;
    if (a.v6)
        out += '[';
    out += text;
    if (a.v6)
        out += ']';
    out += ':';
    out += std::to_string(a.port);
    return out;
}

admin_console::admin_console(server& srv, std::string token, std::chrono::milliseconds period)
    : srv_{srv}
    , token_{std::move(token)}
    , channel_{std::string(channel) + "." + srv.options().engine.node_id}
    , period_{period} {
    srv_.mount("/admin/comet", *this);
    srv_.route(http::verb::get, "/admin",
               [this](incoming& in, std::string_view rest) { serve(in, rest); });
    thread_ = std::thread([this] { run(); });
}

admin_console::~admin_console() {
    stop();
}

void admin_console::stop() {
    {
        std::lock_guard lock{mutex_};
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id())
        thread_.join();
}

bool admin_console::allows(std::string_view path,
                           const http::request<http::string_body>& request) const {
    // The page: a `?token=` is the link the dashboard is opened with (its script moves the
    // token into a header at once); a wrong one is refused, none serves the bare page.
    if (is_page(path)) {
        const auto t = query_param(request.target(), "token");
        return !t || auth::constant_time_equal(*t, token_);
    }
    if (!needs_header(path))
        return true;
    // Data: the header only. A token in a URL lands in browser history and proxies' logs.
    const auto h = request.find(beast::string_view{token_header.data(), token_header.size()});
    return h != request.end() && auth::constant_time_equal(h->value(), token_);
}

response admin_console::forbidden() {
    return {403, content_kind::text,
            packet::from("forbidden: wrong or missing admin token (send it in the "
                         "X-Megaphone-Token header)\n")};
}

void admin_console::serve(incoming& in, std::string_view rest) {
    // `rest` follows "/admin": "", "/", "/sessions", "/assets/NAME" (anything else: 404).
    if (rest.empty() || rest == "/")
        return in.ex.reply(asset("admin.html"));
    if (rest.starts_with("/assets/"))
        return in.ex.reply(asset(rest.substr(8)));
    if (rest != "/sessions")
        return in.ex.reply({404, content_kind::text, packet::from("not found\n")});

    const std::string_view target = in.request.target();
    const std::size_t size = std::max<std::size_t>(1, number_param(target, "size", 20, 200));
    const std::size_t page = number_param(target, "page", 0, 10000);
    srv_.list_sessions(
        page * size, size,
        [ex = in.ex, page, size](std::size_t total, std::vector<session_row> rows) {
            nlohmann::json list = nlohmann::json::array();
            for (const session_row& r : rows)
                list.push_back({{"sid", r.sid},
                                {"state", to_string(r.state)},
                                {"age", static_cast<double>(r.age.count()) / 1000.0},
                                {"queued", r.queued},
                                {"held", r.held},
                                {"transport", r.transport == content_kind::xml ? "bosh" : "json"},
                                {"address", to_string(r.peer)}});
            const nlohmann::json body{
                {"total", total}, {"page", page}, {"size", size}, {"sessions", std::move(list)}};
            ex.reply({200, content_kind::json, packet::from(body.dump())});
        });
}

nlohmann::json admin_console::snapshot() {
    auto now = std::make_unique<metrics_snapshot>(srv_.metrics());
    const auto at = std::chrono::steady_clock::now();
    std::lock_guard lock{mutex_};
    const double dt = previous_ ? std::chrono::duration<double>(at - previous_at_).count() : 0.0;

    nlohmann::json states = nlohmann::json::object();
    for (std::size_t f = 0; f < fsm_state_count; ++f)
        if (static_cast<fsm_state>(f) != fsm_state::closed)
            states[std::string(to_string(static_cast<fsm_state>(f)))] =
                std::max<std::int64_t>(0, now->sessions[f]);
    nlohmann::json transitions = nlohmann::json::array();
    double rate_total = 0;
    for (std::size_t f = 0; f < fsm_state_count; ++f)
        for (std::size_t e = 0; e < fsm_event_names.size(); ++e)
            for (std::size_t t = 0; t < fsm_state_count; ++t) {
                const std::uint64_t total = now->transitions[f][e][t];
                if (total == 0)
                    continue;
                const std::uint64_t before = previous_ ? previous_->transitions[f][e][t] : total;
                const double rate = dt > 0 ? static_cast<double>(total - before) / dt : 0.0;
                rate_total += rate;
                transitions.push_back({{"from", to_string(static_cast<fsm_state>(f))},
                                       {"event", fsm_event_names[e]},
                                       {"to", to_string(static_cast<fsm_state>(t))},
                                       {"total", total},
                                       {"rate", rate}});
            }
    nlohmann::json closed = nlohmann::json::object();
    for (std::size_t r = 0; r < close_reason_count; ++r)
        if (now->closed[r] != 0)
            closed[std::string(to_string(static_cast<close_reason>(r)))] = now->closed[r];
    const std::string& self = srv_.options().engine.node_id;
    nlohmann::json nodes = nlohmann::json::array();
    {
        std::lock_guard view_lock{cluster_->mutex};
        for (const cluster_node& n : cluster_->nodes)
            nodes.push_back({{"id", n.id},
                             {"address", n.address},
                             {"age_ms", n.age.count()},
                             {"self", n.id == self}});
    }
    std::uint64_t created = 0, requests = 0;
    for (std::size_t t = 0; t < metrics_snapshot::transports; ++t) {
        created += now->created[t];
        requests += now->requests[t];
    }
    nlohmann::json value{
        {"type", "stats"},
        {"time", std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count()},
        {"states", std::move(states)},
        {"sessions", now->live_sessions()},
        {"held", std::max<std::int64_t>(0, now->held)},
        {"streams", std::max<std::int64_t>(0, now->streams)},
        {"transitions", std::move(transitions)},
        {"transitions_total", now->transitions_total()},
        {"transitions_per_second", rate_total},
        {"created", created},
        {"closed", std::move(closed)},
        {"requests", requests},
        {"messages_in", now->messages_in},
        {"messages_out", now->messages_out},
        {"node", self},
        {"nodes", std::move(nodes)},
    };
    previous_ = std::move(now);
    previous_at_ = at;
    latest_ = json_codec::instance().encode(value);
    return value;
}

void admin_console::run() {
    std::unique_lock lock{mutex_};
    while (!stopping_) {
        lock.unlock();
        // A fresh list for the next snapshot; this one shows the last answer.
        srv_.cluster_nodes([view = cluster_](std::vector<cluster_node> nodes) {
            std::lock_guard view_lock{view->mutex};
            view->nodes = std::move(nodes);
        });
        srv_.publish(channel_, snapshot());
        lock.lock();
        wake_.wait_for(lock, period_, [this] { return stopping_; });
    }
}

void admin_console::on_open(session& s) {
    s.subscribe(channel_);
    packet latest;
    {
        std::lock_guard lock{mutex_};
        latest = latest_;
    }
    if (latest)
        s.push(latest);
}

} // namespace megaphone
