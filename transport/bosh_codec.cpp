#include "transport/bosh_codec.hpp"

#include "transport/xml_escape.hpp"

#include <expat.h>
#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <new>
#include <stdexcept>

namespace megaphone {

namespace {

// ------------------------------------------------------------------------------------------------
// Parsing

/// Separates namespace URI, local name and prefix in the names expat reports. 0xFF never occurs
/// in UTF-8, so no URI or name can contain it (expat refuses URIs that contain the separator).
constexpr char ns_separator = '\xFF';

struct expanded_name {
    std::string_view uri; ///< empty: in no namespace
    std::string_view local;
    std::string_view prefix; ///< empty: unprefixed
    bool namespaced = false;
};

/// Splits "uri<sep>local<sep>prefix", "uri<sep>local" or "local" (XML_SetReturnNSTriplet).
expanded_name split_name(const XML_Char* name) {
    std::string_view s{name};
    expanded_name n;
    const auto first = s.find(ns_separator);
    if (first == std::string_view::npos) {
        n.local = s;
        return n;
    }
    n.namespaced = true;
    n.uri = s.substr(0, first);
    const auto rest = s.substr(first + 1);
    const auto second = rest.find(ns_separator);
    n.local = rest.substr(0, second);
    if (second != std::string_view::npos)
        n.prefix = rest.substr(second + 1);
    return n;
}

std::string clark_name(const expanded_name& n) {
    if (!n.namespaced)
        return std::string(n.local);
    std::string out;
    out.reserve(n.uri.size() + n.local.size() + 2);
    out += '{';
    out += n.uri;
    out += '}';
    out += n.local;
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
        return lower(x) == lower(y);
    });
}

/// Reads one <body/> with expat, recording what bosh_body holds. One instance per document.
class body_parser {
public:
    explicit body_parser(std::string_view input)
        : input_{input}
        , parser_{XML_ParserCreateNS("UTF-8", ns_separator)} {
        // Forcing UTF-8 overrides the document's declaration: payload bytes are copied as they
        // are, so any other encoding would hand out something that is not UTF-8.
        if (!parser_)
            throw std::bad_alloc();
        XML_SetUserData(parser_, this);
        XML_SetReturnNSTriplet(parser_, XML_TRUE);
        XML_SetElementHandler(parser_, &body_parser::on_start, &body_parser::on_end);
        XML_SetNamespaceDeclHandler(parser_, &body_parser::on_namespace, nullptr);
        XML_SetCharacterDataHandler(parser_, &body_parser::on_text);
        XML_SetXmlDeclHandler(parser_, &body_parser::on_xml_declaration);
        // XEP-0124 §6 forbids all of these. Refusing the DTD at its first byte also rules out
        // entity declarations, and with them entity expansion attacks.
        XML_SetStartDoctypeDeclHandler(parser_, &body_parser::on_forbidden_doctype);
        XML_SetCommentHandler(parser_, &body_parser::on_forbidden_comment);
        XML_SetProcessingInstructionHandler(parser_, &body_parser::on_forbidden_pi);
        XML_SetSkippedEntityHandler(parser_, &body_parser::on_forbidden_entity);
        XML_SetParamEntityParsing(parser_, XML_PARAM_ENTITY_PARSING_NEVER);
    }
    ~body_parser() { XML_ParserFree(parser_); }
    body_parser(const body_parser&) = delete;
    body_parser& operator=(const body_parser&) = delete;

    std::variant<bosh_body, protocol_error> run() {
        if (input_.size() > static_cast<std::size_t>(INT_MAX))
            return protocol_error::bad_request;
        const auto status = XML_Parse(parser_, input_.data(), static_cast<int>(input_.size()),
                                      /*isFinal=*/XML_TRUE);
        if (status != XML_STATUS_OK || failed_ || !saw_root_)
            return protocol_error::bad_request;
        return std::move(body_);
    }

private:
    static body_parser& self(void* data) { return *static_cast<body_parser*>(data); }

    void fail() {
        if (!failed_) {
            failed_ = true;
            XML_StopParser(parser_, XML_FALSE);
        }
    }

    /// Runs a handler; nothing may be thrown through expat's C frames.
    template <typename F>
    void guarded(F&& f) {
        if (failed_)
            return;
        try {
            f();
        } catch (...) {
            fail();
        }
    }

    static void XMLCALL on_namespace(void* data, const XML_Char* prefix, const XML_Char* uri) {
        auto& p = self(data);
        p.guarded([&] {
            // Reported before the start tag that declares it; a null uri undeclares (xmlns='').
            p.pending_.emplace_back(prefix ? prefix : "", uri ? uri : "");
        });
    }

    static void XMLCALL on_start(void* data, const XML_Char* name, const XML_Char** attrs) {
        auto& p = self(data);
        p.guarded([&] { p.start(name, attrs); });
    }

    static void XMLCALL on_end(void* data, const XML_Char* name) {
        auto& p = self(data);
        p.guarded([&] { p.end(name); });
    }

    static void XMLCALL on_text(void* data, const XML_Char* s, int len) {
        auto& p = self(data);
        if (p.depth_ != 1)
            return; // text inside payloads is theirs; outside the root expat reports none
        for (int i = 0; i < len; ++i) {
            if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
                return p.fail(); // §6: <body/> itself carries no character data
        }
    }

    static void XMLCALL on_xml_declaration(void* data, const XML_Char*, const XML_Char* encoding,
                                           int) {
        if (encoding && !iequals(encoding, "UTF-8") && !iequals(encoding, "UTF8"))
            self(data).fail();
    }

    static void XMLCALL on_forbidden_doctype(void* data, const XML_Char*, const XML_Char*,
                                             const XML_Char*, int) {
        self(data).fail();
    }
    static void XMLCALL on_forbidden_comment(void* data, const XML_Char*) { self(data).fail(); }
    static void XMLCALL on_forbidden_pi(void* data, const XML_Char*, const XML_Char*) {
        self(data).fail();
    }
    static void XMLCALL on_forbidden_entity(void* data, const XML_Char*, int) { self(data).fail(); }

    std::size_t event_offset() const {
        const auto index = XML_GetCurrentByteIndex(parser_);
        if (index < 0 || static_cast<std::size_t>(index) > input_.size())
            throw std::out_of_range("expat byte index");
        return static_cast<std::size_t>(index);
    }
    std::size_t event_length() const {
        const int count = XML_GetCurrentByteCount(parser_);
        return count < 0 ? 0 : static_cast<std::size_t>(count);
    }

    void start(const XML_Char* raw_name, const XML_Char** attrs) {
        if (++depth_ > bosh_max_depth)
            return fail();
        const expanded_name name = split_name(raw_name);
        if (depth_ == 1) {
            if (name.uri != bosh_namespace || name.local != "body")
                return fail();
            saw_root_ = true;
            body_.namespaces = std::move(pending_);
            pending_.clear();
            for (int i = 0; attrs[i]; i += 2)
                body_.attributes.emplace_back(clark_name(split_name(attrs[i])), attrs[i + 1]);
            return;
        }
        if (depth_ == 2) {
            // A payload starts: remember where its bytes are, to copy them when it ends.
            child_start_ = event_offset();
            child_tag_end_ = child_start_ + event_length();
            const std::size_t raw_length = name.prefix.empty()
                                               ? name.local.size()
                                               : name.prefix.size() + 1 + name.local.size();
            child_name_end_ = child_start_ + 1 + raw_length;
            if (child_tag_end_ > input_.size() || child_name_end_ >= child_tag_end_ ||
                input_[child_start_] != '<')
                return fail();
            carried_.clear();
            inner_.clear();
        }
        for (auto& declaration : pending_)
            inner_.emplace_back(std::move(declaration.first), depth_);
        pending_.clear();

        // Unprefixed attributes are in no namespace, so only an element uses the default one.
        if (name.namespaced)
            use(name.prefix);
        for (int i = 0; attrs[i]; i += 2) {
            const expanded_name attribute = split_name(attrs[i]);
            if (attribute.namespaced)
                use(attribute.prefix);
        }
    }

    /// Notes that the current payload uses `prefix` ("" = the default namespace): if no element
    /// of the payload declared it, the declaration comes from <body/> and must be carried.
    void use(std::string_view prefix) {
        if (prefix == "xml")
            return; // bound by definition, never declared
        for (const auto& declared : inner_) {
            if (declared.first == prefix)
                return;
        }
        if (std::find(carried_.begin(), carried_.end(), prefix) == carried_.end())
            carried_.emplace_back(prefix);
    }

    void end(const XML_Char*) {
        if (depth_ == 2) {
            // An empty-element tag reports its end with no bytes of its own.
            const std::size_t length = event_length();
            const std::size_t end = length ? event_offset() + length : child_tag_end_;
            if (end > input_.size() || end <= child_name_end_ || input_[end - 1] != '>')
                return fail();
            body_.payloads.push_back(standalone(end));
        }
        while (!inner_.empty() && inner_.back().second == depth_)
            inner_.pop_back();
        --depth_;
    }

    /// The payload's bytes with the declarations it inherits from <body/> added after its name.
    std::string standalone(std::size_t end) const {
        std::string out;
        out.reserve(end - child_start_ + 64 * carried_.size());
        out.append(input_.substr(child_start_, child_name_end_ - child_start_));
        for (const auto& [prefix, uri] : body_.namespaces) {
            if (std::find(carried_.begin(), carried_.end(), prefix) == carried_.end())
                continue;
            out += " xmlns";
            if (!prefix.empty()) {
                out += ':';
                out += prefix;
            }
            out += "='";
            xml_escape_attribute(out, uri);
            out += '\'';
        }
        out.append(input_.substr(child_name_end_, end - child_name_end_));
        return out;
    }

    std::string_view input_;
    XML_Parser parser_;
    bool failed_ = false;
    bool saw_root_ = false;
    int depth_ = 0;
    bosh_body body_;
    /// Declarations of the start tag being reported.
    std::vector<std::pair<std::string, std::string>> pending_;
    // The payload being read.
    std::size_t child_start_ = 0;                    ///< its '<'
    std::size_t child_name_end_ = 0;                 ///< just past its element name
    std::size_t child_tag_end_ = 0;                  ///< just past its start tag
    std::vector<std::pair<std::string, int>> inner_; ///< prefixes declared inside it, with depth
    std::vector<std::string> carried_;               ///< prefixes it takes from <body/>
};

// ------------------------------------------------------------------------------------------------
// Attribute values

constexpr std::uint64_t max_rid = (std::uint64_t{1} << 53) - 1;

/// An unsigned decimal: digits only (no sign, no spaces), at most `limit`.
std::optional<std::uint64_t> unsigned_value(std::string_view text, std::uint64_t limit) {
    if (text.empty())
        return std::nullopt;
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value > limit)
        return std::nullopt;
    return value;
}

/// Whether a value may go into an HTTP header as it is.
bool header_safe(std::string_view value) {
    return !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
        return c == '\t' || (c >= 0x20 && c <= 0x7E);
    });
}

std::optional<std::pair<std::uint32_t, std::uint32_t>> parse_version(std::string_view text) {
    const auto dot = text.find('.');
    if (dot == std::string_view::npos)
        return std::nullopt;
    auto major = unsigned_value(text.substr(0, dot), UINT32_MAX);
    auto minor = unsigned_value(text.substr(dot + 1), UINT32_MAX);
    if (!major || !minor)
        return std::nullopt;
    return std::pair{static_cast<std::uint32_t>(*major), static_cast<std::uint32_t>(*minor)};
}

// ------------------------------------------------------------------------------------------------
// Encoding

constexpr std::string_view xmlns_bosh = " xmlns='http://jabber.org/protocol/httpbind'";

void append_attribute(std::string& out, std::string_view name, std::string_view value) {
    out += ' ';
    out += name;
    out += "='";
    xml_escape_attribute(out, value);
    out += '\'';
}

void append_attribute(std::string& out, std::string_view name, std::uint64_t value) {
    out += ' ';
    out += name;
    out += "='";
    out += std::to_string(value);
    out += '\'';
}

/// Closes the start tag `head` ("<body ...") around the packets, or as an empty element.
packet wrap(std::string head, std::span<const packet> packets) {
    if (packets.empty()) {
        head += "/>";
        return packet::from(head);
    }
    std::size_t size = head.size() + 8;
    for (const packet& p : packets)
        size += p.size();
    head.reserve(size);
    head += '>';
    for (const packet& p : packets)
        head += p.view();
    head += "</body>";
    return packet::from(head);
}

std::string terminate_head(std::string_view condition) {
    std::string head = "<body type='terminate'";
    if (!condition.empty())
        append_attribute(head, "condition", condition);
    head += xmlns_bosh;
    return head;
}

/// Whole seconds, rounded down: a `wait` or `inactivity` we announce must not exceed ours.
std::uint64_t seconds_down(std::chrono::milliseconds d) {
    return d.count() <= 0 ? 0 : static_cast<std::uint64_t>(d.count() / 1000);
}
/// Whole seconds, rounded up: the `polling` interval we announce must not be shorter than ours.
std::uint64_t seconds_up(std::chrono::milliseconds d) {
    return d.count() <= 0 ? 0 : static_cast<std::uint64_t>((d.count() + 999) / 1000);
}

} // namespace

// ------------------------------------------------------------------------------------------------
// Requests

const std::string* bosh_body::attribute(std::string_view name) const noexcept {
    for (const auto& [n, v] : attributes) {
        if (n == name)
            return &v;
    }
    return nullptr;
}

const std::string* bosh_body::namespace_uri(std::string_view prefix) const noexcept {
    for (const auto& [p, uri] : namespaces) {
        if (p == prefix)
            return &uri;
    }
    return nullptr;
}

std::variant<bosh_body, protocol_error> parse_bosh_body(std::string_view xml) {
    try {
        return body_parser{xml}.run();
    } catch (const std::bad_alloc&) {
        throw;
    } catch (...) {
        return protocol_error::bad_request;
    }
}

std::variant<bosh_request, protocol_error> decode_bosh_request(std::string_view text) {
    auto parsed = parse_bosh_body(text);
    if (auto* e = std::get_if<protocol_error>(&parsed))
        return *e;
    auto& body = std::get<bosh_body>(parsed);

    static constexpr std::string_view xml_lang = "{http://www.w3.org/XML/1998/namespace}lang";
    static constexpr std::string_view xmpp_version = "{urn:xmpp:xbosh}version";
    static constexpr std::string_view xmpp_restart = "{urn:xmpp:xbosh}restart";

    bosh_request req;
    bool have_rid = false;
    auto small = [](std::string_view v, std::optional<std::uint32_t>& out) {
        auto n = unsigned_value(v, UINT32_MAX);
        if (n)
            out = static_cast<std::uint32_t>(*n);
        return n.has_value();
    };
    for (auto& [name, value] : body.attributes) {
        if (name == "rid") {
            auto v = unsigned_value(value, max_rid);
            if (!v)
                return protocol_error::bad_request;
            req.rid = *v;
            have_rid = true;
        } else if (name == "sid") {
            if (value.empty())
                return protocol_error::bad_request;
            req.sid = std::move(value);
        } else if (name == "ack") {
            auto v = unsigned_value(value, max_rid);
            if (!v)
                return protocol_error::bad_request;
            req.ack = *v;
        } else if (name == "type") {
            if (value == "terminate")
                req.type = bosh_type::terminate;
            else if (value == "error")
                req.type = bosh_type::error;
            else
                return protocol_error::bad_request;
        } else if (name == "condition") {
            req.condition = std::move(value);
        } else if (name == "pause") {
            if (!small(value, req.pause))
                return protocol_error::bad_request;
        } else if (name == "wait") {
            if (!small(value, req.wait))
                return protocol_error::bad_request;
        } else if (name == "hold") {
            if (!small(value, req.hold))
                return protocol_error::bad_request;
        } else if (name == "key") {
            req.key = std::move(value);
        } else if (name == "newkey") {
            req.newkey = std::move(value);
        } else if (name == "stream") {
            req.stream = std::move(value);
        } else if (name == "to") {
            req.to = std::move(value);
        } else if (name == "ver") {
            req.ver = std::move(value);
        } else if (name == "content") {
            // It becomes a header: a line break in it would let the client write headers.
            if (value.empty())
                continue; // says nothing: the default applies
            if (!header_safe(value))
                return protocol_error::bad_request;
            req.content = std::move(value);
        } else if (name == "route") {
            req.route = std::move(value);
        } else if (name == "from") {
            req.from = std::move(value);
        } else if (name == "token") {
            req.token = std::move(value);
        } else if (name == xml_lang) {
            req.lang = std::move(value);
        } else if (name == xmpp_version) {
            req.xmpp_version = std::move(value);
        } else if (name == xmpp_restart) {
            if (value == "true" || value == "1")
                req.restart = true;
            else if (value == "false" || value == "0")
                req.restart = false;
            else
                return protocol_error::bad_request;
        }
        // Anything else is ignored: the schema allows attributes from other namespaces, and a
        // response-only attribute from a confused client harms nobody.
    }
    if (!have_rid)
        return protocol_error::bad_request;
    req.payloads = std::move(body.payloads);
    return req;
}

client_request to_client_request(bosh_request req) {
    client_request out;
    const bool creation = req.creation();
    out.sid = req.sid;
    out.rid = req.rid;
    if (!creation)
        out.ack = req.ack;
    out.terminate = req.terminate();
    out.wait = req.wait;
    out.hold = req.hold;
    if (req.token)
        out.token = std::move(*req.token);
    out.messages.reserve(req.payloads.size());
    for (auto& payload : req.payloads)
        out.messages.push_back(message::xml(std::move(payload)));
    // The session layer acts on the rest (pause, key, restart, creation attributes).
    req.payloads.clear();
    out.bosh = std::make_shared<const bosh_request>(std::move(req));
    return out;
}

std::string negotiate_bosh_version(const std::optional<std::string>& client_ver) {
    static const auto ours = *parse_version(bosh_version);
    if (!client_ver)
        return std::string(bosh_version);
    const auto theirs = parse_version(*client_ver);
    if (!theirs || *theirs >= ours)
        return std::string(bosh_version);
    return std::to_string(theirs->first) + '.' + std::to_string(theirs->second);
}

std::string_view bosh_content_type(const std::optional<std::string>& content) noexcept {
    if (content && header_safe(*content))
        return *content;
    return bosh_default_content_type;
}

std::string_view to_string(bosh_condition c) noexcept {
    switch (c) {
    case bosh_condition::bad_request:
        return "bad-request";
    case bosh_condition::host_gone:
        return "host-gone";
    case bosh_condition::host_unknown:
        return "host-unknown";
    case bosh_condition::improper_addressing:
        return "improper-addressing";
    case bosh_condition::internal_server_error:
        return "internal-server-error";
    case bosh_condition::item_not_found:
        return "item-not-found";
    case bosh_condition::other_request:
        return "other-request";
    case bosh_condition::policy_violation:
        return "policy-violation";
    case bosh_condition::remote_connection_failed:
        return "remote-connection-failed";
    case bosh_condition::remote_stream_error:
        return "remote-stream-error";
    case bosh_condition::see_other_uri:
        return "see-other-uri";
    case bosh_condition::system_shutdown:
        return "system-shutdown";
    case bosh_condition::undefined_condition:
        return "undefined-condition";
    }
    return "undefined-condition";
}

// ------------------------------------------------------------------------------------------------
// Answers

bosh_creation bosh_creation::answer_to(const bosh_request& req, const session_info& info) {
    bosh_creation c{info};
    c.ver = negotiate_bosh_version(req.ver);
    if (req.to)
        c.from = *req.to;
    if (req.wants_acks())
        c.ack = req.rid;
    if (req.xmpp_version)
        c.xmpp_version = "1.0";
    return c;
}

packet bosh_codec::creation_answer(const bosh_creation& c, std::span<const packet> packets) {
    std::string head = "<body";
    append_attribute(head, "sid", c.info.sid);
    append_attribute(head, "wait", seconds_down(c.info.wait));
    append_attribute(head, "requests", c.info.requests);
    append_attribute(head, "hold", c.info.hold);
    append_attribute(head, "inactivity", seconds_down(c.info.inactivity));
    append_attribute(head, "polling", seconds_up(c.info.polling));
    append_attribute(head, "ver", c.ver);
    if (c.maxpause)
        append_attribute(head, "maxpause", static_cast<std::uint64_t>(c.maxpause->count()));
    if (!c.from.empty())
        append_attribute(head, "from", c.from);
    if (c.ack)
        append_attribute(head, "ack", *c.ack);
    if (!c.accept.empty())
        append_attribute(head, "accept", c.accept);
    if (!c.charsets.empty())
        append_attribute(head, "charsets", c.charsets);
    if (!c.xmpp_version.empty()) {
        append_attribute(head, "xmpp:version", c.xmpp_version);
        head += " xmpp:restartlogic='true'";
    }
    head += xmlns_bosh;
    if (!c.xmpp_version.empty()) {
        // The stream prefix lets the stream features (or a stream error) that follow use it.
        head += " xmlns:xmpp='urn:xmpp:xbosh' xmlns:stream='http://etherx.jabber.org/streams'";
    }
    return wrap(std::move(head), packets);
}

packet bosh_codec::data_answer(std::span<const packet> packets, std::optional<request_id> ack) {
    std::string head = "<body";
    if (ack)
        append_attribute(head, "ack", *ack);
    head += xmlns_bosh;
    return wrap(std::move(head), packets);
}

packet bosh_codec::report_answer(request_id report, std::chrono::milliseconds time) {
    std::string head = "<body";
    append_attribute(head, "report", report);
    append_attribute(head, "time",
                     static_cast<std::uint64_t>(
                         std::max<std::int64_t>(0, static_cast<std::int64_t>(time.count()))));
    head += xmlns_bosh;
    return wrap(std::move(head), {});
}

packet bosh_codec::terminate_answer(bosh_condition c, std::span<const packet> content) {
    std::string head = terminate_head(to_string(c));
    if (c == bosh_condition::remote_stream_error)
        head += " xmlns:stream='http://etherx.jabber.org/streams'";
    return wrap(std::move(head), content);
}

packet bosh_codec::remote_stream_error(std::string_view stream_error,
                                       std::span<const packet> before) {
    std::vector<packet> content(before.begin(), before.end());
    content.push_back(packet::from(stream_error));
    return terminate_answer(bosh_condition::remote_stream_error, content);
}

packet bosh_codec::see_other_uri(std::string_view uri) {
    std::string element = "<uri>";
    xml_escape_text(element, uri);
    element += "</uri>";
    const packet content[] = {packet::from(element)};
    return terminate_answer(bosh_condition::see_other_uri, content);
}

packet bosh_codec::created(const session_info& info, request_id,
                           std::span<const packet> packets) const {
    return creation_answer(bosh_creation{info}, packets);
}

packet bosh_codec::data(request_id, std::span<const packet> packets) const {
    return data_answer(packets, std::nullopt);
}

packet bosh_codec::closing(request_id, close_reason why) const {
    return wrap(terminate_head(condition(why)), {});
}

packet bosh_codec::terminated(request_id) const {
    return wrap(terminate_head({}), {});
}

packet bosh_codec::replaced(request_id) const {
    return packet::from("<body type='error' xmlns='http://jabber.org/protocol/httpbind'/>");
}

packet bosh_codec::error(protocol_error e) const {
    return wrap(terminate_head(condition(e)), {});
}

packet bosh_codec::encode(const nlohmann::json& value) const {
    std::string out = "<json xmlns='urn:xmpp:json:0'>";
    xml_escape_text(out, value.dump());
    out += "</json>";
    return packet::from(out);
}

const bosh_codec& bosh_codec::instance() {
    static const bosh_codec codec;
    return codec;
}

std::optional<unsigned> bosh_legacy_status(std::string_view condition) noexcept {
    if (condition == "bad-request")
        return 400;
    if (condition == "policy-violation")
        return 403;
    if (condition == "item-not-found")
        return 404;
    return std::nullopt;
}

response bosh_codec::error_response(protocol_error e, bool legacy) const {
    return bosh_error_response(e, legacy);
}

response bosh_error_response(protocol_error e, bool legacy) {
    if (legacy) {
        if (auto status = bosh_legacy_status(condition(e)))
            return response{*status, content_kind::xml, packet::from("")};
    }
    return response{200, content_kind::xml, bosh_codec::instance().error(e)};
}

// ------------------------------------------------------------------------------------------------
// Key sequencing

namespace {

std::string lower_case(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

} // namespace

bosh_key_sequence::bosh_key_sequence(std::optional<std::string> newkey) {
    if (newkey)
        expected_ = lower_case(*newkey);
}

bosh_key_sequence::verdict bosh_key_sequence::accept(const std::optional<std::string>& key,
                                                     const std::optional<std::string>& newkey) {
    if (active()) {
        if (!key)
            return verdict::missing_key;
        if (sha1_hex(*key) != expected_)
            return verdict::wrong_key;
    }
    // §15.4: the next key hashes to this request's newkey, or to its key if it set no newkey.
    // An empty newkey would end the checks for good, so it counts as absent.
    if (newkey && !newkey->empty())
        expected_ = lower_case(*newkey);
    else if (key)
        expected_ = lower_case(*key);
    return verdict::accepted;
}

std::string bosh_key_sequence::sha1_hex(std::string_view text) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha1(), nullptr) != 1)
        throw std::runtime_error("SHA-1 failed");
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * length);
    for (unsigned int i = 0; i < length; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 0x0F];
    }
    return out;
}

} // namespace megaphone
