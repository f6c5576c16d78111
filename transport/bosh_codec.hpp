// The XML transport's codec: BOSH (XEP-0124 v1.11, protocol version 1.6) with the XMPP additions
// of XEP-0206. Request bodies in, answer bodies out; knows nothing of sessions.
//
// Payloads are opaque. A payload is one child element of the client's <body/>, kept as the exact
// bytes the client sent, with one addition so it stays valid standalone: each namespace
// declaration that was made on <body/> and that the child's subtree uses (the prefix of an
// element or attribute name, or the default namespace of an unprefixed element name) and that
// the subtree does not declare itself is inserted into the child's start tag, right after the
// element name, as ` xmlns:p='uri'` (or ` xmlns='uri'`), in the order <body/> declared them.
// Nothing else changes: attribute order, quotes, entity references, whitespace and line ends
// stay as sent. Not carried: xml:lang (it is not a namespace declaration; it is in
// bosh_request::lang) and prefixes used only inside attribute values or text (QNames in
// content), which no parser can see. A child in no namespace stays in no namespace. An
// unprefixed child of <body xmlns='http://jabber.org/protocol/httpbind'> is in that namespace and
// gets it carried as is; unlike Prosody and ejabberd, the codec does not rewrite it to
// jabber:client (that is the XMPP application's call, not the transport's).
#pragma once

#include "transport/protocol.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace megaphone {

inline constexpr std::string_view bosh_namespace = "http://jabber.org/protocol/httpbind";
/// XEP-0206's attributes (xmpp:version, xmpp:restart, xmpp:restartlogic), whatever the prefix.
inline constexpr std::string_view xbosh_namespace = "urn:xmpp:xbosh";
inline constexpr std::string_view xmpp_stream_namespace = "http://etherx.jabber.org/streams";
/// The highest BOSH version we speak; a creation answer carries the lower of this and the client's.
inline constexpr std::string_view bosh_version = "1.6";
/// The Content-Type of every answer unless the creation request's `content` asked for another.
inline constexpr std::string_view bosh_default_content_type = "text/xml; charset=utf-8";
/// Element nesting deeper than this (<body/> is level 1) is refused as bad-request while parsing,
/// so the work stays bounded by the body size the HTTP layer already limits.
inline constexpr int bosh_max_depth = 64;

/// One <body/> wrapper read generically: what decode_bosh_request() is built on, and what tests
/// and clients use to read answers back.
struct bosh_body {
    /// Attributes in document order. Unqualified names as written ("rid"); namespaced ones in
    /// Clark notation ("{urn:xmpp:xbosh}version", "{http://www.w3.org/XML/1998/namespace}lang").
    std::vector<std::pair<std::string, std::string>> attributes;
    /// The namespace declarations on <body/>: prefix ("" for the default namespace) and URI.
    std::vector<std::pair<std::string, std::string>> namespaces;
    /// The child elements, standalone (see the top of this file).
    std::vector<std::string> payloads;

    const std::string* attribute(std::string_view name) const noexcept;
    const std::string* namespace_uri(std::string_view prefix) const noexcept;
};

/// Parses one <body/> in the httpbind namespace. Refused (always bad_request): anything that is
/// not well-formed XML with namespaces, a root other than httpbind's <body/>, a DTD, a comment, a
/// processing instruction, an entity reference other than the five predefined ones and character
/// references, non-whitespace character data directly in <body/>, nesting deeper than
/// bosh_max_depth, and an XML declaration naming an encoding other than UTF-8 (the payloads are
/// copied as bytes, so they must already be UTF-8).
std::variant<bosh_body, protocol_error> parse_bosh_body(std::string_view xml);

/// The `type` attribute of a request.
enum class bosh_type : std::uint8_t {
    none,
    terminate, ///< end the session (§13), or with `stream`, only that stream (§16.5)
    error,     ///< a binding error reported by the client (§17: "unlikely", but allowed)
};

/// Everything a client's <body/> carries. Optional attributes are std::nullopt when absent, so
/// presence stays visible (`ver` present or not decides legacy error codes, §17.1).
struct bosh_request {
    // Every request.
    std::string sid; ///< empty: a session creation (a present but empty sid is refused)
    request_id rid = 0;
    /// At creation, "1" asks for response acknowledgements (§9.2, a flag, not a rid); later,
    /// the highest rid whose response the client has received, all lower ones too.
    std::optional<request_id> ack;
    bosh_type type = bosh_type::none;
    std::optional<std::string> condition; ///< with a client-side type='terminate'/'error'
    std::optional<std::uint32_t> pause;   ///< seconds (§10)
    std::optional<std::string> key;       ///< §15
    std::optional<std::string> newkey;    ///< §15: at creation, or with `key` to rekey
    std::optional<std::string> stream;    ///< §16 (multiple streams)
    // Creation (and, for to/lang/route/from, adding a stream or an XMPP restart).
    std::optional<std::string> to;
    std::optional<std::string> lang;   ///< xml:lang
    std::optional<std::string> ver;    ///< highest BOSH version of the client, "major.minor"
    std::optional<std::uint32_t> wait; ///< seconds
    std::optional<std::uint32_t> hold;
    std::optional<std::string> content; ///< Content-Type for every answer (checked header-safe)
    std::optional<std::string> route;   ///< "proto:host:port"
    std::optional<std::string> from;
    std::optional<std::string> token; ///< a signed client token (docs/PROTOCOL.md, "Tokens")
    // XEP-0206, in urn:xmpp:xbosh under whatever prefix the client declared.
    std::optional<std::string> xmpp_version; ///< xmpp:version
    bool restart = false;                    ///< xmpp:restart='true' (or '1')
    /// The child elements, in order, each standalone (see the top of this file).
    std::vector<std::string> payloads;

    bool creation() const noexcept { return sid.empty(); }
    bool terminate() const noexcept { return type == bosh_type::terminate; }
    bool poll() const noexcept { return payloads.empty(); }
    /// A creation request that asked for response acks (ack='1', §9.2).
    bool wants_acks() const noexcept { return creation() && ack == 1u; }
    /// A creation request from a legacy client (no `ver`): errors use HTTP codes (§17.1).
    bool legacy() const noexcept { return !ver.has_value(); }
};

/// Decodes a request body; an error is always bad_request. Beyond parse_bosh_body(): `rid` is
/// required, an unsigned decimal at most 2^53 - 1 (§14.1), like `ack`; wait, hold and pause are
/// unsigned decimals that fit 32 bits; `type` is "terminate" or "error"; `sid`, if present, is
/// not empty; xmpp:restart is a boolean; `content` holds only printable ASCII (it becomes a
/// header; an empty one is ignored). Unknown attributes, and attributes in other namespaces, are
/// ignored.
std::variant<bosh_request, protocol_error> decode_bosh_request(std::string_view body);

/// The transport-neutral request: each payload becomes message::xml(payload). The creation's
/// ack='1' is a flag, not a response ack, so it is dropped.
client_request to_client_request(bosh_request req);

/// The lower of the client's `ver` and ours (§7.2: minor numbers compare as integers, "1.10" >
/// "1.6"). An absent or unreadable version gets ours.
std::string negotiate_bosh_version(const std::optional<std::string>& client_ver);

/// The Content-Type of every answer of a session (§7.1): the creation's `content`, else
/// text/xml; charset=utf-8. An unsafe value (control characters) also gets the default.
std::string_view bosh_content_type(const std::optional<std::string>& content) noexcept;

/// The terminal binding conditions (§17.2).
enum class bosh_condition : std::uint8_t {
    bad_request,
    host_gone,
    host_unknown,
    improper_addressing,
    internal_server_error,
    item_not_found,
    other_request,
    policy_violation,
    remote_connection_failed,
    remote_stream_error, ///< carries a copy of the <stream:error/> (XEP-0206)
    see_other_uri,       ///< carries a <uri/> child
    system_shutdown,
    undefined_condition, ///< application information goes in the body
};
std::string_view to_string(bosh_condition c) noexcept;

/// What the creation answer says beyond session_info (§7.2, XEP-0206). Strings are empty when
/// the attribute is to be left out.
struct bosh_creation {
    explicit bosh_creation(const session_info& terms)
        : info{terms} {}

    session_info info;
    std::string ver{bosh_version}; ///< negotiate_bosh_version(request.ver)
    std::string from;              ///< the identity of the server: usually the request's `to`
    /// Set to the creation rid when the server will send request acks all session long (§9.1).
    std::optional<request_id> ack;
    std::optional<std::chrono::seconds> maxpause; ///< only if pauses are honoured (§10)
    std::string accept;                           ///< content encodings accepted (§7.2)
    std::string charsets;                         ///< NMTOKENS (§7.2)
    /// XEP-0206: the XMPP version ("1.0") when the client sent xmpp:version; adds
    /// xmpp:restartlogic='true' and the xmpp and stream prefix declarations.
    std::string xmpp_version;

    /// What a creation request and the session's own terms make: ver negotiated, from = to,
    /// ack when the client asked for acks, XMPP attributes when the client sent xmpp:version.
    static bosh_creation answer_to(const bosh_request& req, const session_info& info);
};

class bosh_codec final : public session_codec {
public:
    content_kind kind() const noexcept override { return content_kind::xml; }
    /// creation_answer() with only what session_info knows: no from, ack, maxpause or XMPP
    /// attributes, ver 1.6.
    packet created(const session_info& info, request_id rid,
                   std::span<const packet> packets) const override;
    /// <body xmlns='http://jabber.org/protocol/httpbind'>packets</body>, or <body .../> if none.
    packet data(request_id rid, std::span<const packet> packets) const override;
    /// <body type='terminate' [condition='...'] xmlns='...'/> (no condition for a silent end).
    packet closing(request_id rid, close_reason why) const override;
    /// <body type='terminate' xmlns='...'/> (§13).
    packet terminated(request_id rid) const override;
    /// The recoverable binding error <body type='error' xmlns='...'/> (§14.3, §17.3): the client
    /// re-sends the request and every earlier unanswered one.
    packet replaced(request_id rid) const override;
    /// <body type='terminate' condition='...' xmlns='...'/>; send it with bosh_error_response().
    packet error(protocol_error e) const override;
    /// 200 with a terminate body; bare 400/403/404 for legacy clients (XEP-0124 §17.1).
    response error_response(protocol_error e, bool legacy = false) const override;
    /// A JSON value as a XEP-0335 payload: <json xmlns='urn:xmpp:json:0'>text</json>.
    packet encode(const nlohmann::json& value) const override;

    /// The session creation answer (§7.2) with the packets pushed on open as its children.
    static packet creation_answer(const bosh_creation& c, std::span<const packet> packets);
    /// A data answer with a request acknowledgement (§9.1): the session layer leaves `ack` out
    /// when it equals the rid being answered.
    static packet data_answer(std::span<const packet> packets, std::optional<request_id> ack);
    /// An answer reporting a missing response (§9.2): report = the client's ack + 1, time =
    /// milliseconds since that response was sent.
    static packet report_answer(request_id report, std::chrono::milliseconds time);
    /// A terminal binding error with optional content. remote-stream-error also declares the
    /// stream prefix; pass the payloads then the <stream:error/> copy as `content`.
    static packet terminate_answer(bosh_condition c, std::span<const packet> content = {});
    static packet remote_stream_error(std::string_view stream_error,
                                      std::span<const packet> before = {});
    static packet see_other_uri(std::string_view uri);

    static const bosh_codec& instance();
};

/// The HTTP answer to a refused request (§17.1). Clients that sent `ver` at creation get 200 with
/// the terminate body; legacy ones (no `ver`) get 400, 403 or 404 with an empty body for the
/// three conditions that had an HTTP code, and the terminate body otherwise. A request that
/// cannot be tied to a session (unknown sid, unparsable) is answered as non-legacy, except a
/// refused body that is still a `<body/>` with neither `sid` nor `ver`: a legacy creation.
response bosh_error_response(protocol_error e, bool legacy);
/// The legacy HTTP code of a condition (bad-request 400, policy-violation 403, item-not-found
/// 404), or nullopt: for closing() answers to legacy clients.
std::optional<unsigned> bosh_legacy_status(std::string_view condition) noexcept;

/// Key sequencing (§15). Starts from the creation's `newkey`; each later request (new rids only,
/// in rid order: re-sent copies carry the key already used) must carry a `key` whose SHA-1, in
/// lower-case hex, equals the previous request's `newkey`, or its `key` if it set no newkey,
/// compared case-insensitively. A request with a newkey switches to a new sequence (§15.5).
class bosh_key_sequence {
public:
    enum class verdict : std::uint8_t {
        accepted,
        missing_key, ///< a key was expected and the request has none
        wrong_key,   ///< SHA-1(key) is not the expected value
    };

    /// `newkey` from the creation request; std::nullopt: the client does not use keys (yet).
    explicit bosh_key_sequence(std::optional<std::string> newkey = std::nullopt);

    /// Checks a request's key and, if accepted, moves on. Anything but `accepted` means: do not
    /// process the request, terminate the session with item-not-found.
    verdict accept(const std::optional<std::string>& key, const std::optional<std::string>& newkey);
    verdict accept(const bosh_request& req) { return accept(req.key, req.newkey); }

    /// True once a key is expected on every request.
    bool active() const noexcept { return !expected_.empty(); }

    /// hex(SHA-1(text)), lower case.
    static std::string sha1_hex(std::string_view text);

private:
    std::string expected_; ///< lower-case hex; empty: no key expected
};

} // namespace megaphone
