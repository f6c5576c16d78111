#include "examples/xmpp/xmpp_core.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <stdexcept>
#include <utility>

namespace megaphone::examples::xmpp {

namespace {

constexpr std::size_t max_jid_part = 1023;
/// Directed presence is remembered for at most this many JIDs per connection.
constexpr std::size_t max_directed = 1000;

bool is_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

bool has_control(std::string_view s) noexcept {
    return std::any_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7F;
    });
}

bool valid_local(std::string_view s) noexcept {
    return !s.empty() && s.size() <= max_jid_part && !has_control(s) &&
           s.find_first_of("\"&'/:<>@ ") == std::string_view::npos;
}

bool valid_resource(std::string_view s) noexcept {
    return !s.empty() && s.size() <= max_jid_part && !has_control(s);
}

bool valid_domain(std::string_view s) noexcept {
    return !s.empty() && s.size() <= max_jid_part && !has_control(s) &&
           s.find_first_of("@/ ") == std::string_view::npos;
}

std::string normalize_domain(std::string_view s) {
    if (!s.empty() && s.back() == '.')
        s.remove_suffix(1);
    return lower(s);
}

/// Strict base64 (RFC 4648, padded, no whitespace inside). nullopt if malformed.
std::optional<std::string> base64_decode(std::string_view in) {
    if (in.size() % 4 != 0)
        return std::nullopt;
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z')
            return c - 'A';
        if (c >= 'a' && c <= 'z')
            return c - 'a' + 26;
        if (c >= '0' && c <= '9')
            return c - '0' + 52;
        if (c == '+')
            return 62;
        if (c == '/')
            return 63;
        return -1;
    };
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (std::size_t i = 0; i < in.size(); i += 4) {
        const bool last = i + 4 == in.size();
        int pad = 0;
        std::array<int, 4> v{};
        for (std::size_t k = 0; k < 4; ++k) {
            const char c = in[i + k];
            if (c == '=' && last && k >= 2) {
                ++pad;
                v[k] = 0;
                continue;
            }
            if (pad > 0) // data after padding
                return std::nullopt;
            v[k] = value(c);
            if (v[k] < 0)
                return std::nullopt;
        }
        const unsigned n = static_cast<unsigned>(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
        out += static_cast<char>(n >> 16 & 0xFF);
        if (pad < 2)
            out += static_cast<char>(n >> 8 & 0xFF);
        if (pad < 1)
            out += static_cast<char>(n & 0xFF);
    }
    return out;
}

element stanza_error(std::string_view type, std::string_view condition) {
    element err(ns_client, "error");
    err.set("type", type);
    err.add(element(ns_stanzas, condition));
    return err;
}

std::string sasl_failure(std::string_view condition) {
    element f(ns_sasl, "failure");
    f.add(element(ns_sasl, condition));
    return serialize(f);
}

int parse_priority(const element& presence) {
    const element* p = presence.child(ns_client, "priority");
    if (!p)
        return 0;
    const std::string text = p->text();
    const std::string_view t = trim(text);
    int value = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
    if (ec != std::errc{} || end != t.data() + t.size() || value < -128 || value > 127)
        return 0;
    return value;
}

} // namespace

//--------------------------------------------------------------------------------------------------
// Users file, JIDs

std::map<std::string, std::string, std::less<>> load_users(const std::filesystem::path& path) {
    std::ifstream in{path};
    if (!in)
        throw std::runtime_error("cannot read users file " + path.string());
    std::map<std::string, std::string, std::less<>> users;
    std::string line;
    for (unsigned number = 1; std::getline(in, line); ++number) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (trim(line).empty() || trim(line).front() == '#')
            continue;
        const auto colon = line.find(':');
        const std::string name =
            colon == std::string::npos ? "" : lower(trim(line.substr(0, colon)));
        if (!valid_local(name))
            throw std::runtime_error(path.string() + ":" + std::to_string(number) +
                                     ": expected user:password with a valid user name");
        users[name] = line.substr(colon + 1);
    }
    return users;
}

std::string jid::bare() const {
    return local.empty() ? domain : local + '@' + domain;
}

std::string jid::full() const {
    return resource.empty() ? bare() : bare() + '/' + resource;
}

std::optional<jid> parse_jid(std::string_view text) {
    jid j;
    std::string_view head = text;
    if (const auto slash = text.find('/'); slash != std::string_view::npos) {
        head = text.substr(0, slash);
        const std::string_view resource = text.substr(slash + 1);
        if (!valid_resource(resource))
            return std::nullopt;
        j.resource = resource;
    }
    if (const auto at = head.find('@'); at != std::string_view::npos) {
        const std::string_view local = head.substr(0, at);
        if (!valid_local(local))
            return std::nullopt;
        j.local = lower(local);
        head = head.substr(at + 1);
    }
    if (!head.empty() && head.back() == '.')
        head.remove_suffix(1);
    if (!valid_domain(head))
        return std::nullopt;
    j.domain = lower(head);
    return j;
}

//--------------------------------------------------------------------------------------------------
// core

/// One element being handled: who sent it, and where the answers go.
struct core::context {
    std::string_view conn;
    connection& c;
    outputs& out;

    void reply(std::string xml) { out.push_back({std::string(conn), std::move(xml)}); }
    void send(std::string_view target, std::string xml) {
        out.push_back({std::string(target), std::move(xml)});
    }
};

core::core(config cfg)
    : config_(std::move(cfg))
    , random_(std::random_device{}()) {
    config_.domain = normalize_domain(config_.domain);
    config_.echo_user = lower(config_.echo_user);
}

core::connection& core::conn_of(std::string_view conn) {
    auto it = conns_.find(std::string(conn));
    if (it == conns_.end())
        it = conns_.emplace(std::string(conn), connection{}).first;
    return it->second;
}

std::string core::bare_jid(const connection& c) const {
    return c.local + '@' + config_.domain;
}

std::string core::full_jid(const connection& c) const {
    return bare_jid(c) + '/' + c.resource;
}

bool core::is_echo(const jid& j) const {
    return j.local == config_.echo_user && j.domain == config_.domain;
}

std::string core::random_id(std::size_t hex_digits) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    while (out.size() < hex_digits) {
        std::uint64_t r = random_();
        for (int i = 0; i < 16 && out.size() < hex_digits; ++i, r >>= 4)
            out += digits[r & 0xF];
    }
    return out;
}

std::string core::stream_features(const connection& c) const {
    element features(ns_stream, "features");
    switch (c.state) {
    case phase::fresh: {
        element& mechanisms = features.add(element(ns_sasl, "mechanisms"));
        mechanisms.add(element(ns_sasl, "mechanism")).add_text("PLAIN");
        if (config_.anonymous)
            mechanisms.add(element(ns_sasl, "mechanism")).add_text("ANONYMOUS");
        break;
    }
    case phase::authenticated:
    case phase::restarted:
        features.add(element(ns_bind, "bind")).add(element(ns_bind, "required"));
        features.add(element(ns_session, "session")).add(element(ns_session, "optional"));
        break;
    case phase::bound:
        break; // nothing left to negotiate
    }
    return serialize(features);
}

outputs core::open(std::string_view conn, std::string_view host) {
    std::lock_guard lock{mutex_};
    if (!host.empty() && normalize_domain(host) != config_.domain) {
        element err(ns_stream, "error");
        err.add(element(ns_streams_errors, "host-unknown"));
        return {{std::string(conn), serialize(err), true}};
    }
    if (auto it = conns_.find(std::string(conn)); it != conns_.end()) {
        if (it->second.state == phase::bound)
            routes_.erase(full_jid(it->second));
        conns_.erase(it);
    }
    const connection& c = conn_of(conn);
    return {{std::string(conn), stream_features(c)}};
}

outputs core::restart(std::string_view conn) {
    std::lock_guard lock{mutex_};
    connection& c = conn_of(conn);
    if (c.state == phase::authenticated)
        c.state = phase::restarted;
    return {{std::string(conn), stream_features(c)}};
}

outputs core::stanza(std::string_view conn, std::string_view xml) {
    std::lock_guard lock{mutex_};
    outputs out;
    std::optional<element> e = parse(xml);
    if (!e)
        return out; // unreadable: ignored
    context cx{conn, conn_of(conn), out};
    if (e->ns == ns_sasl) {
        sasl(cx, *e);
    } else if (e->ns == ns_client) {
        if (e->name == "iq")
            iq(cx, *e);
        else if (e->name == "message")
            message(cx, *e);
        else if (e->name == "presence")
            presence(cx, *e);
    } else if (e->name == "enable" && (e->ns == "urn:xmpp:sm:3" || e->ns == "urn:xmpp:sm:2")) {
        element failed(e->ns, "failed");
        failed.add(element(ns_stanzas, "unexpected-request"));
        cx.reply(serialize(failed));
    }
    return out;
}

outputs core::close(std::string_view conn) {
    std::lock_guard lock{mutex_};
    outputs out;
    auto it = conns_.find(std::string(conn));
    if (it == conns_.end())
        return out;
    connection& c = it->second;
    if (c.state == phase::bound) {
        routes_.erase(full_jid(c)); // first: the unavailable presence does not go to itself
        if (c.available || !c.directed.empty()) {
            element p(ns_client, "presence");
            p.set("from", full_jid(c));
            p.set("type", "unavailable");
            broadcast_unavailable(c, out, serialize(p));
        }
    }
    conns_.erase(it);
    return out;
}

std::optional<std::string> core::bound_jid(std::string_view conn) const {
    std::lock_guard lock{mutex_};
    auto it = conns_.find(std::string(conn));
    if (it == conns_.end() || it->second.state != phase::bound)
        return std::nullopt;
    return full_jid(it->second);
}

std::size_t core::connections() const {
    std::lock_guard lock{mutex_};
    return conns_.size();
}

std::vector<std::string> core::available_of(std::string_view bare, bool any_priority) const {
    std::vector<std::string> conns;
    const std::string prefix = std::string(bare) + '/';
    for (auto it = routes_.lower_bound(prefix);
         it != routes_.end() && std::string_view(it->first).starts_with(prefix); ++it) {
        auto c = conns_.find(it->second);
        if (c != conns_.end() && c->second.available && (any_priority || c->second.priority >= 0))
            conns.push_back(it->second);
    }
    return conns;
}

std::vector<std::string> core::message_targets(std::string_view bare) const {
    std::vector<std::string> conns = available_of(bare);
    if (!conns.empty())
        return conns;
    const std::string prefix = std::string(bare) + '/';
    for (auto it = routes_.lower_bound(prefix);
         it != routes_.end() && std::string_view(it->first).starts_with(prefix); ++it) {
        auto c = conns_.find(it->second);
        if (c != conns_.end() && !c->second.presence_sent)
            conns.push_back(it->second);
    }
    return conns;
}

//--------------------------------------------------------------------------------------------------
// SASL

void core::sasl(context& cx, const element& e) {
    connection& c = cx.c;
    if (c.state != phase::fresh)
        return; // SASL is over for this stream: ignored
    if (e.name == "auth") {
        c.sasl_plain_pending = false;
        const std::string* mechanism = e.attr("mechanism");
        if (mechanism && *mechanism == "ANONYMOUS" && config_.anonymous) {
            // A fresh account: a random (version 4) UUID as the local part.
            std::string id = random_id(32);
            id[12] = '4';
            id[16] = "89ab"[id[16] % 4];
            c.local = id.substr(0, 8) + '-' + id.substr(8, 4) + '-' + id.substr(12, 4) + '-' +
                      id.substr(16, 4) + '-' + id.substr(20);
            c.anonymous = true;
            c.state = phase::authenticated;
            return cx.reply(serialize(element(ns_sasl, "success")));
        }
        if (mechanism && *mechanism == "PLAIN") {
            const std::string text = e.text();
            if (trim(text).empty()) {
                // No initial response: ask for it (RFC 6120 §6.4.2).
                c.sasl_plain_pending = true;
                return cx.reply(serialize(element(ns_sasl, "challenge")));
            }
            return plain(cx, trim(text));
        }
        return cx.reply(sasl_failure("invalid-mechanism"));
    }
    if (e.name == "response") {
        if (!c.sasl_plain_pending)
            return cx.reply(sasl_failure("malformed-request"));
        c.sasl_plain_pending = false;
        const std::string text = e.text();
        return plain(cx, trim(text));
    }
    if (e.name == "abort") {
        c.sasl_plain_pending = false;
        return cx.reply(sasl_failure("aborted"));
    }
}

void core::plain(context& cx, std::string_view encoded) {
    // RFC 4616: [authzid] NUL authcid NUL passwd. "=" is an empty response.
    const std::optional<std::string> decoded =
        encoded == "=" ? std::optional<std::string>("") : base64_decode(encoded);
    if (!decoded)
        return cx.reply(sasl_failure("incorrect-encoding"));
    const std::string_view msg = *decoded;
    const auto first = msg.find('\0');
    const auto second = first == std::string_view::npos ? first : msg.find('\0', first + 1);
    if (second == std::string_view::npos || msg.find('\0', second + 1) != std::string_view::npos)
        return cx.reply(sasl_failure("malformed-request"));
    const std::string_view authzid = msg.substr(0, first);
    std::string user = lower(msg.substr(first + 1, second - first - 1));
    const std::string_view password = msg.substr(second + 1);

    // The authentication identity is the local part; user@domain is accepted too.
    if (const auto at = user.find('@'); at != std::string::npos) {
        if (normalize_domain(std::string_view(user).substr(at + 1)) != config_.domain)
            return cx.reply(sasl_failure("not-authorized"));
        user.resize(at);
    }
    auto account = config_.users.find(user);
    if (account == config_.users.end() || account->second != password || user == config_.echo_user)
        return cx.reply(sasl_failure("not-authorized"));
    // One may only act as oneself: the authorization identity is empty, the user, or its JID.
    if (!authzid.empty()) {
        const std::string who = lower(authzid);
        if (who != user && who != user + '@' + config_.domain)
            return cx.reply(sasl_failure("invalid-authzid"));
    }
    cx.c.local = user;
    cx.c.anonymous = false;
    cx.c.state = phase::authenticated;
    cx.reply(serialize(element(ns_sasl, "success")));
}

//--------------------------------------------------------------------------------------------------
// iq

namespace {

/// The start of an answer to `request`: same kind, `type`, same id, from what the request was
/// sent to (nothing if it had no `to`: the account itself), to the requester once bound.
element answer(const element& request, std::string_view type, const std::string& to) {
    element r(ns_client, request.name);
    r.set("type", type);
    if (const std::string* id = request.attr("id"))
        r.set("id", *id);
    if (const std::string* from = request.attr("to"))
        r.set("from", *from);
    if (!to.empty())
        r.set("to", to);
    return r;
}

/// An error answer, with the request's child elements (RFC 6120 §8.3.1) then the <error/>.
element error_answer(const element& request, const std::string& to, std::string_view type,
                     std::string_view condition) {
    element r = answer(request, "error", to);
    for (const element& child : request.children)
        r.add(child);
    r.add(stanza_error(type, condition));
    return r;
}

} // namespace

void core::iq(context& cx, element& e) {
    connection& c = cx.c;
    const std::string* id = e.attr("id");
    if (!id)
        return; // an iq without an id cannot be answered: ignored
    const std::string type = e.attr("type") ? *e.attr("type") : std::string();
    const bool request = type == "get" || type == "set";
    const std::string me = c.state == phase::bound ? full_jid(c) : std::string();
    auto fail = [&](std::string_view error_type, std::string_view condition) {
        cx.reply(serialize(error_answer(e, me, error_type, condition)));
    };
    if (!request && type != "result" && type != "error")
        return fail("modify", "bad-request");

    if (c.state != phase::bound) {
        if (c.state == phase::restarted && type == "set" && e.child(ns_bind, "bind"))
            return bind(cx, e);
        if (request)
            fail("auth", "not-authorized");
        return;
    }

    const std::string* to = e.attr("to");
    if (!to) {
        if (request)
            server_iq(cx, e, true);
        return;
    }
    const std::optional<jid> target = parse_jid(*to);
    if (!target) {
        if (request)
            fail("modify", "jid-malformed");
        return;
    }
    if (target->domain != config_.domain) {
        if (request)
            fail("cancel", "remote-server-not-found");
        return;
    }
    if (target->local.empty()) {
        if (request)
            server_iq(cx, e, false);
        return;
    }
    if (is_echo(*target)) {
        if (request)
            echo_iq(cx, e);
        return;
    }
    if (!target->resource.empty()) {
        auto route = routes_.find(target->full());
        if (route != routes_.end()) {
            e.set("from", me);
            return cx.send(route->second, serialize(e));
        }
        if (request)
            fail("cancel", "service-unavailable");
        return;
    }
    if (target->bare() == bare_jid(c)) {
        if (request)
            server_iq(cx, e, true);
        return;
    }
    // Another account's bare JID: handled by the server on its behalf, which offers nothing.
    if (request)
        fail("cancel", "service-unavailable");
}

void core::bind(context& cx, const element& e) {
    connection& c = cx.c;
    const element* b = e.child(ns_bind, "bind");
    std::string resource;
    if (const element* r = b->child(ns_bind, "resource"))
        resource = std::string(trim(r->text()));
    if (!resource.empty() && !valid_resource(resource)) {
        cx.reply(serialize(error_answer(e, {}, "modify", "bad-request")));
        return;
    }
    if (resource.empty())
        resource = random_id(16);
    // A resource already bound for the account: this one gets a variant (RFC 6120 §7.7.2.2).
    const std::string bare = bare_jid(c);
    std::string chosen = resource;
    while (routes_.contains(bare + '/' + chosen))
        chosen = resource.substr(0, max_jid_part - 9) + '-' + random_id(8);
    c.resource = chosen;
    c.state = phase::bound;
    routes_[full_jid(c)] = std::string(cx.conn);

    element result = answer(e, "result", {});
    result.add(element(ns_bind, "bind")).add(element(ns_bind, "jid")).add_text(full_jid(c));
    cx.reply(serialize(result));
}

void core::server_iq(context& cx, const element& e, bool for_account) {
    const std::string me = full_jid(cx.c);
    auto fail = [&](std::string_view error_type, std::string_view condition) {
        cx.reply(serialize(error_answer(e, me, error_type, condition)));
    };
    if (e.children.size() != 1)
        return fail("modify", "bad-request"); // get and set carry exactly one payload
    const element& payload = e.children.front();
    const std::string type = *e.attr("type");
    element result = answer(e, "result", me);

    if (type == "get" && payload.is(ns_ping, "ping")) {
        // XEP-0199: an empty result.
    } else if (type == "get" && payload.is(ns_disco_info, "query")) {
        if (payload.attr("node"))
            return fail("cancel", "item-not-found");
        element& query = result.add(element(ns_disco_info, "query"));
        element& identity = query.add(element(ns_disco_info, "identity"));
        if (for_account) {
            identity.set("category", "account");
            identity.set("type", cx.c.anonymous ? "anonymous" : "registered");
        } else {
            identity.set("category", "server");
            identity.set("type", "im");
            identity.set("name", "Megaphone XMPP example");
        }
        std::vector<std::string_view> features{ns_disco_info, ns_disco_items};
        if (!for_account)
            features.push_back(ns_ping);
        for (std::string_view f : features)
            query.add(element(ns_disco_info, "feature")).set("var", f);
    } else if (type == "get" && payload.is(ns_disco_items, "query")) {
        if (payload.attr("node"))
            return fail("cancel", "item-not-found");
        result.add(element(ns_disco_items, "query"));
    } else if (type == "get" && for_account && payload.is(ns_roster, "query")) {
        result.add(element(ns_roster, "query")); // the roster is always empty
    } else if (type == "set" && payload.is(ns_session, "session")) {
        // RFC 3921 session establishment: nothing to do, kept for older clients.
    } else if (type == "set" && payload.is(ns_bind, "bind")) {
        return fail("cancel", "not-allowed"); // one resource per stream
    } else {
        return fail("cancel", "service-unavailable");
    }
    cx.reply(serialize(result));
}

void core::echo_iq(context& cx, const element& e) {
    const std::string me = full_jid(cx.c);
    auto fail = [&](std::string_view error_type, std::string_view condition) {
        cx.reply(serialize(error_answer(e, me, error_type, condition)));
    };
    const jid target = *parse_jid(*e.attr("to"));
    if (!target.resource.empty() && target.resource != config_.echo_resource)
        return fail("cancel", "service-unavailable");
    if (e.children.size() != 1)
        return fail("modify", "bad-request");
    const element& payload = e.children.front();
    const std::string type = *e.attr("type");
    element result = answer(e, "result", me);
    if (type == "get" && payload.is(ns_ping, "ping")) {
    } else if (type == "get" && payload.is(ns_disco_info, "query") && !payload.attr("node")) {
        element& query = result.add(element(ns_disco_info, "query"));
        query.add(element(ns_disco_info, "identity"))
            .set("category", "client")
            .set("type", "bot")
            .set("name", "Echo");
        for (std::string_view f : {ns_disco_info, ns_ping})
            query.add(element(ns_disco_info, "feature")).set("var", f);
    } else {
        return fail("cancel", "service-unavailable");
    }
    cx.reply(serialize(result));
}

//--------------------------------------------------------------------------------------------------
// message

void core::message(context& cx, element& e) {
    connection& c = cx.c;
    std::string type = e.attr("type") ? *e.attr("type") : "normal";
    if (type != "chat" && type != "groupchat" && type != "headline" && type != "error")
        type = "normal"; // RFC 6121 §5.2.2: an unknown type is normal
    const bool bound = c.state == phase::bound;
    const std::string me = bound ? full_jid(c) : std::string();
    auto bounce = [&](std::string_view error_type, std::string_view condition) {
        if (type != "error") // never an error about an error
            cx.reply(serialize(error_answer(e, me, error_type, condition)));
    };
    if (!bound)
        return bounce("auth", "not-authorized");

    jid target{c.local, config_.domain, {}}; // no `to`: the sender's own account
    if (const std::string* to = e.attr("to")) {
        const std::optional<jid> parsed = parse_jid(*to);
        if (!parsed)
            return bounce("modify", "jid-malformed");
        target = *parsed;
    }
    if (target.domain != config_.domain)
        return bounce("cancel", "remote-server-not-found");
    if (target.local.empty()) {
        if (type != "headline")
            bounce("cancel", "service-unavailable"); // the server takes no messages
        return;
    }
    if (is_echo(target))
        return echo_message(cx, e);

    e.set("from", me);
    if (!target.resource.empty()) {
        if (auto route = routes_.find(target.full()); route != routes_.end())
            return cx.send(route->second, serialize(e));
        // That resource is gone: RFC 6121 §8.5.3.2.1.
        if (type == "groupchat")
            return bounce("cancel", "service-unavailable");
        if (type == "headline" || type == "error")
            return;
    }
    // To the bare JID (RFC 6121 §8.5.2).
    if (type == "error")
        return;
    const std::vector<std::string> targets = message_targets(target.bare());
    if (targets.empty() || type == "groupchat") {
        if (type != "headline")
            bounce("cancel", "service-unavailable"); // no offline storage
        return;
    }
    const std::string xml = serialize(e);
    for (const std::string& t : targets)
        cx.send(t, xml);
}

void core::echo_message(context& cx, const element& e) {
    const std::string* type = e.attr("type");
    if ((type && *type == "error") || !e.child(ns_client, "body"))
        return; // nothing to echo (chat states, receipts), and never errors
    element reply(ns_client, "message");
    reply.set("from", config_.echo_user + '@' + config_.domain + '/' + config_.echo_resource);
    reply.set("to", full_jid(cx.c));
    if (type)
        reply.set("type", *type);
    if (const std::string* id = e.attr("id"))
        reply.set("id", *id);
    for (const element& child : e.children)
        if (child.is(ns_client, "body") || child.is(ns_client, "thread"))
            reply.add(child);
    cx.reply(serialize(reply));
}

//--------------------------------------------------------------------------------------------------
// presence

void core::presence(context& cx, element& e) {
    connection& c = cx.c;
    if (c.state != phase::bound)
        return;
    const std::string type = e.attr("type") ? *e.attr("type") : std::string();
    const std::string me = full_jid(c);
    e.set("from", me);

    const std::string* to = e.attr("to");
    if (!to) {
        if (type.empty() || type == "unavailable")
            c.presence_sent = true;
        if (type.empty()) {
            // Broadcast available presence: to the account's available resources, this one too.
            const bool initial = !c.available;
            c.available = true;
            c.priority = parse_priority(e);
            c.presence = serialize(e);
            const std::vector<std::string> resources = available_of(bare_jid(c), true);
            for (const std::string& t : resources)
                cx.send(t, c.presence);
            if (initial) // the newcomer learns the presence of the others
                for (const std::string& t : resources)
                    if (t != cx.conn)
                        cx.reply(conns_.at(t).presence);
        } else if (type == "unavailable") {
            broadcast_unavailable(c, cx.out, serialize(e));
        }
        return; // other types need a `to`
    }

    const std::optional<jid> target = parse_jid(*to);
    if (!target || target->domain != config_.domain || target->local.empty())
        return; // presence is never bounced
    if (is_echo(*target)) {
        if (type.empty() || type == "probe") {
            element p(ns_client, "presence");
            p.set("from", config_.echo_user + '@' + config_.domain + '/' + config_.echo_resource);
            p.set("to", me);
            cx.reply(serialize(p));
        }
        return;
    }
    if (type == "error") {
        if (auto route = routes_.find(target->full()); route != routes_.end())
            cx.send(route->second, serialize(e));
        return;
    }
    if (!type.empty() && type != "unavailable")
        return; // subscriptions and probes: no roster, nothing to do

    // Directed presence: remembered, so that an unavailable presence follows it.
    const std::string key = target->full();
    if (type.empty()) {
        if (c.directed.size() < max_directed)
            c.directed.insert(key);
    } else {
        c.directed.erase(key);
    }
    const std::string xml = serialize(e);
    if (!target->resource.empty()) {
        if (auto route = routes_.find(key); route != routes_.end())
            cx.send(route->second, xml);
    } else {
        for (const std::string& t : available_of(key, true))
            cx.send(t, xml);
    }
}

void core::broadcast_unavailable(connection& c, outputs& out, const std::string& stanza) {
    std::vector<std::string> targets;
    if (c.available)
        targets = available_of(bare_jid(c), true);
    for (const std::string& key : c.directed) {
        if (key.find('/') != std::string::npos) {
            if (auto route = routes_.find(key); route != routes_.end())
                targets.push_back(route->second);
        } else {
            for (std::string& t : available_of(key, true))
                targets.push_back(std::move(t));
        }
    }
    // Each target once, in the order found.
    std::set<std::string_view> seen;
    for (const std::string& t : targets)
        if (seen.insert(t).second)
            out.push_back({t, stanza});
    c.available = false;
    c.priority = 0;
    c.presence.clear();
    c.directed.clear();
}

} // namespace megaphone::examples::xmpp
