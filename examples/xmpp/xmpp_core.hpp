// xmpp_core: the XMPP example's logic, with no session in it: a small, correct XMPP service for
// clients that reach it over BOSH (XEP-0124/0206). Every connection (a BOSH session) is named by
// an opaque id, the sid; every entry point takes stanzas in and returns what to send to which
// connection, so the whole service is unit-testable without sockets.
//
// What it does (RFC 6120/6121, XEP-0030, XEP-0199):
//  - Stream features: SASL PLAIN (accounts from a users file) and ANONYMOUS (a fresh
//    <uuid>@domain) before authentication; after the restart, resource binding (required) and
//    the legacy session iq (optional). A bind without a resource, or with one already bound for
//    the account, gets a generated resource.
//  - iq to the server (to='domain'), and iq with no `to` or to the user's own bare JID (handled
//    by the server on the account's behalf): roster get (always empty), XEP-0199 ping,
//    disco#info (identity server/im, or account/registered|anonymous) and disco#items (empty),
//    session. Anything else of type get/set: <service-unavailable/> (cancel). iq results and
//    errors addressed to the server are dropped, never answered.
//  - Routing between bound connections, with `from` stamped as the sender's full JID (whatever
//    the client wrote there). To a full JID: that connection. To a bare JID: messages of type
//    chat/normal/headline go to every available resource with priority >= 0, or, when there is
//    none, to every connected resource that has not sent presence yet (bound but silent, as
//    simple clients are: RFC 6121 §8.5.2.1 "available or connected resources"); a full JID that
//    is not bound falls back to the bare JID for chat/normal. iq get/set to an unbound full JID
//    or to another user's bare JID: <service-unavailable/>.
//  - Undeliverable messages (no such resource, the domain itself, an unknown account --
//    there is no offline storage, and unknown accounts look offline): type chat/normal/groupchat
//    bounce with <service-unavailable/> (cancel), as RFC 6121 §8.5.2.2 prescribes when messages
//    are not stored; headline and error are dropped silently. Another domain (no federation):
//    <remote-server-not-found/>. A malformed `to`: <jid-malformed/> (modify). Error stanzas are
//    never answered with errors. Bounces come from the `to` the sender used, carry the original
//    children, and then the <error/>.
//  - Presence without subscriptions (the roster is empty): initial and later broadcast presence
//    goes to the user's own available resources (the sender included; a newly available
//    resource also gets the presence of the user's other available resources); directed
//    presence goes to its target (a bound full JID, or every available resource of a bare JID)
//    and is remembered; unavailable presence (sent, or on close) goes to the user's available
//    resources and to every directed-presence target still online. subscribe/subscribed/
//    unsubscribe/unsubscribed and probes are dropped (no subscriptions to manage), except that
//    the echo bot answers probes and directed presence with its own available presence.
//  - The echo bot, echo@domain (always online, resource `bot`): every message with a <body/>
//    sent to echo@domain or echo@domain/<anything> comes back to its sender from
//    echo@domain/bot with the same type, id, bodies and thread. It answers ping and disco#info.
//    The bot's name cannot log in, even if the users file lists it.
//  - Before binding: stanzas are refused (iq and message get <not-authorized/>, type auth;
//    presence is dropped). Unknown top-level elements and unreadable XML are ignored, except
//    XEP-0198 <enable/>, answered <failed/> since stream management is not offered.
//  - A creation whose `to` is not the served domain gets a host-unknown stream error and is
//    closed.
#pragma once

#include "examples/xmpp/xmpp_xml.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace megaphone::examples::xmpp {

struct config {
    /// The one domain served (compared case-insensitively).
    std::string domain = "localhost";
    /// Accounts for SASL PLAIN: username (the JID's local part, lower case) -> password.
    std::map<std::string, std::string, std::less<>> users;
    /// SASL ANONYMOUS offered and accepted.
    bool anonymous = true;
    /// The echo bot's local part and resource.
    std::string echo_user = "echo";
    std::string echo_resource = "bot";
};

/// Reads a users file: one `user:password` a line (the password is everything after the first
/// colon); blank lines and lines starting with '#' are skipped, a trailing CR is dropped, names
/// are lower-cased. Throws std::runtime_error if the file cannot be read or a line has no colon
/// or an empty or invalid name.
std::map<std::string, std::string, std::less<>> load_users(const std::filesystem::path& path);

/// A JID, split and normalized: local part and domain lower-cased (ASCII), resource as is.
struct jid {
    std::string local;
    std::string domain;
    std::string resource;

    std::string bare() const;
    std::string full() const;
};
/// nullopt for an invalid JID: an empty domain, an empty local part before '@', an empty
/// resource after '/', a part over 1023 bytes, control characters, or a local part with one of
/// "&'/:<>@ or a space.
std::optional<jid> parse_jid(std::string_view text);

/// One stanza (or other top-level element) to send.
struct output {
    std::string conn; ///< the connection to send it to
    std::string xml;  ///< standalone XML: namespaces declared on it
    /// End that connection after sending `xml` (only for the host-unknown refusal).
    bool close = false;

    friend bool operator==(const output&, const output&) = default;
};
using outputs = std::vector<output>;

/// Thread-safe: every entry point takes one mutex.
class core {
public:
    explicit core(config cfg = {});

    /// A new connection that asked for `host` (the BOSH `to`; empty: the served domain).
    /// Answers the SASL stream features, or refuses an unknown host.
    outputs open(std::string_view conn, std::string_view host);
    /// One top-level element from the connection, as XML text.
    outputs stanza(std::string_view conn, std::string_view xml);
    /// The client restarted its stream (after SASL success): the new stream features.
    outputs restart(std::string_view conn);
    /// The connection has ended: unavailable presence to whoever saw it available. Forgets it.
    outputs close(std::string_view conn);

    /// The bound full JID of a connection, if it has bound one.
    std::optional<std::string> bound_jid(std::string_view conn) const;
    /// Connections open now.
    std::size_t connections() const;
    const config& settings() const noexcept { return config_; }

private:
    enum class phase : std::uint8_t {
        fresh,         ///< before SASL success
        authenticated, ///< SASL succeeded; waiting for the stream restart
        restarted,     ///< restarted; waiting for resource binding
        bound,         ///< a resource is bound: stanzas flow
    };
    struct connection {
        phase state = phase::fresh;
        bool sasl_plain_pending = false; ///< PLAIN sent without an initial response
        bool anonymous = false;
        std::string local;    ///< the account, once authenticated
        std::string resource; ///< once bound
        bool available = false;
        bool presence_sent = false; ///< has sent broadcast presence (available or not)
        int priority = 0;
        std::string presence;           ///< the last broadcast available presence, as sent
        std::set<std::string> directed; ///< JIDs sent directed available presence
    };
    struct context; // one stanza being handled

    connection& conn_of(std::string_view conn);
    std::string full_jid(const connection& c) const;
    std::string bare_jid(const connection& c) const;
    bool is_echo(const jid& j) const;
    std::string random_id(std::size_t hex_digits);
    std::string stream_features(const connection& c) const;

    void sasl(context& cx, const element& e);
    void plain(context& cx, std::string_view encoded);
    void iq(context& cx, element& e);
    void bind(context& cx, const element& e);
    /// An iq get/set the server answers: to the domain, or (`for_account`) to the sender's own
    /// account (no `to`, or its bare JID).
    void server_iq(context& cx, const element& e, bool for_account);
    void echo_iq(context& cx, const element& e);
    void message(context& cx, element& e);
    void echo_message(context& cx, const element& e);
    void presence(context& cx, element& e);
    /// Sends `stanza` (an unavailable presence) to the account's available resources, if `c` was
    /// available, and to its directed-presence targets; then `c` is unavailable.
    void broadcast_unavailable(connection& c, outputs& out, const std::string& stanza);

    /// The connections of an account's available resources, those with priority >= 0 unless
    /// `any_priority`.
    std::vector<std::string> available_of(std::string_view bare, bool any_priority = false) const;
    /// Where a message to a bare JID goes: available_of(bare), or if none, the connections of
    /// the account that have sent no presence.
    std::vector<std::string> message_targets(std::string_view bare) const;

    config config_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, connection> conns_;
    /// Bound full JIDs (normalized: local@domain/resource) -> connection id.
    std::map<std::string, std::string, std::less<>> routes_;
    std::mt19937_64 random_;
};

} // namespace megaphone::examples::xmpp
