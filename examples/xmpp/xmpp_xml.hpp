// The XMPP example's XML: a small namespace-aware element tree, read with expat and written back
// with every namespace declared where it is needed, so any element can be sent on its own.
//
// Stanzas arrive from the BOSH codec as standalone elements. An unprefixed stanza that relied on
// <body/>'s default namespace is in http://jabber.org/protocol/httpbind; like ejabberd and
// Prosody, the parser reads that namespace as jabber:client (on every element of the tree), so
// `<message xmlns='http://jabber.org/protocol/httpbind'><body>hi</body></message>` and
// `<message xmlns='jabber:client'><body>hi</body></message>` are the same stanza.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace megaphone::examples::xmpp {

inline constexpr std::string_view ns_client = "jabber:client";
inline constexpr std::string_view ns_httpbind = "http://jabber.org/protocol/httpbind";
inline constexpr std::string_view ns_stream = "http://etherx.jabber.org/streams";
inline constexpr std::string_view ns_xml = "http://www.w3.org/XML/1998/namespace";
inline constexpr std::string_view ns_sasl = "urn:ietf:params:xml:ns:xmpp-sasl";
inline constexpr std::string_view ns_bind = "urn:ietf:params:xml:ns:xmpp-bind";
inline constexpr std::string_view ns_session = "urn:ietf:params:xml:ns:xmpp-session";
inline constexpr std::string_view ns_stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
inline constexpr std::string_view ns_streams_errors = "urn:ietf:params:xml:ns:xmpp-streams";
inline constexpr std::string_view ns_roster = "jabber:iq:roster";
inline constexpr std::string_view ns_ping = "urn:xmpp:ping";
inline constexpr std::string_view ns_disco_info = "http://jabber.org/protocol/disco#info";
inline constexpr std::string_view ns_disco_items = "http://jabber.org/protocol/disco#items";

/// Elements deeper than this (the stanza is level 1) make a stanza unreadable.
inline constexpr int max_depth = 64;

struct attribute {
    std::string ns; ///< empty for an ordinary (unprefixed) attribute
    std::string name;
    std::string value;
};

struct element {
    std::string ns; ///< empty: in no namespace
    std::string name;
    std::vector<attribute> attributes;
    std::vector<element> children;
    /// Character data around the children: texts[i] comes before children[i], texts.back()
    /// after the last child; always children.size() + 1 entries.
    std::vector<std::string> texts{std::string()};

    element() = default;
    element(std::string_view namespace_uri, std::string_view local_name)
        : ns(namespace_uri)
        , name(local_name) {}

    bool is(std::string_view namespace_uri, std::string_view local_name) const noexcept {
        return ns == namespace_uri && name == local_name;
    }
    /// An unqualified attribute's value, or nullptr.
    const std::string* attr(std::string_view attr_name) const noexcept;
    /// Sets (replacing) or adds an unqualified attribute.
    element& set(std::string_view attr_name, std::string_view value);
    /// Removes an unqualified attribute, if present.
    void erase(std::string_view attr_name);
    /// The first child with this name and namespace, or nullptr.
    const element* child(std::string_view namespace_uri, std::string_view local_name) const;
    /// The character data directly inside this element (not inside its children).
    std::string text() const;
    /// Appends a child; returns it.
    element& add(element child);
    /// Appends character data.
    element& add_text(std::string_view text);
};

/// Reads one standalone element (a stanza). nullopt for anything that is not one well-formed,
/// namespace-well-formed element: a DTD, more than one root, text only, nesting deeper than
/// max_depth. Comments and processing instructions are dropped; CDATA becomes text.
std::optional<element> parse(std::string_view xml);

/// Writes `e` as standalone XML: single-quoted attributes, each element unprefixed with an
/// xmlns='...' where its namespace differs from its parent's (always on `e` itself, xmlns=''
/// for no namespace), xml:* attributes as such, attributes in other namespaces under generated
/// prefixes declared where first needed. Elements of the stream namespace keep the prefix
/// `stream` (<stream:features/>, <stream:error/>), declared on them.
std::string serialize(const element& e);

// Escaping: megaphone::xml_escape_attribute / xml_escape_text (transport/xml_escape.hpp).

} // namespace megaphone::examples::xmpp
