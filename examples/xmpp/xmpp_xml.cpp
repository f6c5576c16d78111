#include "examples/xmpp/xmpp_xml.hpp"

#include "transport/xml_escape.hpp"

#include <expat.h>

#include <algorithm>
#include <memory>
#include <utility>

namespace megaphone::examples::xmpp {

//--------------------------------------------------------------------------------------------------
// element

const std::string* element::attr(std::string_view attr_name) const noexcept {
    for (const attribute& a : attributes)
        if (a.ns.empty() && a.name == attr_name)
            return &a.value;
    return nullptr;
}

element& element::set(std::string_view attr_name, std::string_view value) {
    for (attribute& a : attributes)
        if (a.ns.empty() && a.name == attr_name) {
            a.value = value;
            return *this;
        }
    attributes.push_back({std::string(), std::string(attr_name), std::string(value)});
    return *this;
}

void element::erase(std::string_view attr_name) {
    std::erase_if(attributes,
                  [&](const attribute& a) { return a.ns.empty() && a.name == attr_name; });
}

const element* element::child(std::string_view namespace_uri, std::string_view local_name) const {
    for (const element& c : children)
        if (c.is(namespace_uri, local_name))
            return &c;
    return nullptr;
}

std::string element::text() const {
    std::string out;
    for (const std::string& t : texts)
        out += t;
    return out;
}

element& element::add(element child) {
    children.push_back(std::move(child));
    texts.emplace_back();
    return children.back();
}

element& element::add_text(std::string_view text) {
    texts.back() += text;
    return *this;
}

//--------------------------------------------------------------------------------------------------
// Parsing

namespace {

/// Separates namespace URI and local name in the names expat reports; 0xFF never occurs in UTF-8.
constexpr char ns_separator = '\xFF';

/// Element names in httpbind's namespace are read as jabber:client (`is_element`).
void split_name(const XML_Char* raw, std::string& ns, std::string& name, bool is_element) {
    const std::string_view s{raw};
    const auto sep = s.find(ns_separator);
    if (sep == std::string_view::npos) {
        ns.clear();
        name = s;
        return;
    }
    ns = s.substr(0, sep);
    name = s.substr(sep + 1);
    if (is_element && ns == ns_httpbind)
        ns = ns_client;
}

struct parse_state {
    XML_Parser parser = nullptr;
    std::vector<element> stack; // the open elements
    std::optional<element> root;
    bool failed = false;

    void fail() {
        failed = true;
        XML_StopParser(parser, XML_FALSE);
    }
};

void XMLCALL on_start(void* user, const XML_Char* raw_name, const XML_Char** atts) {
    auto& st = *static_cast<parse_state*>(user);
    if (st.failed)
        return;
    if (st.root || static_cast<int>(st.stack.size()) >= max_depth)
        return st.fail(); // a second root, or too deep
    element e;
    split_name(raw_name, e.ns, e.name, true);
    for (const XML_Char** a = atts; *a; a += 2) {
        attribute at;
        split_name(a[0], at.ns, at.name, false);
        at.value = a[1];
        e.attributes.push_back(std::move(at));
    }
    st.stack.push_back(std::move(e));
}

void XMLCALL on_end(void* user, const XML_Char*) {
    auto& st = *static_cast<parse_state*>(user);
    if (st.failed || st.stack.empty())
        return;
    element e = std::move(st.stack.back());
    st.stack.pop_back();
    if (st.stack.empty())
        st.root = std::move(e);
    else
        st.stack.back().add(std::move(e));
}

void XMLCALL on_text(void* user, const XML_Char* s, int len) {
    auto& st = *static_cast<parse_state*>(user);
    if (st.failed)
        return;
    if (st.stack.empty()) {
        // Only whitespace may surround the root.
        if (!std::all_of(s, s + len,
                         [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }))
            st.fail();
        return;
    }
    st.stack.back().add_text(std::string_view(s, static_cast<std::size_t>(len)));
}

void XMLCALL on_doctype(void* user, const XML_Char*, const XML_Char*, const XML_Char*, int) {
    static_cast<parse_state*>(user)->fail(); // no DTDs: no entity expansion of any kind
}

void XMLCALL on_entity_decl(void* user, const XML_Char*, int, const XML_Char*, int, const XML_Char*,
                            const XML_Char*, const XML_Char*, const XML_Char*) {
    static_cast<parse_state*>(user)->fail();
}

struct parser_deleter {
    void operator()(XML_Parser p) const noexcept { XML_ParserFree(p); }
};

} // namespace

std::optional<element> parse(std::string_view xml) {
    std::unique_ptr<std::remove_pointer_t<XML_Parser>, parser_deleter> parser{
        XML_ParserCreateNS("UTF-8", ns_separator)};
    if (!parser)
        return std::nullopt;
    parse_state st;
    st.parser = parser.get();
    XML_SetUserData(parser.get(), &st);
    XML_SetElementHandler(parser.get(), on_start, on_end);
    XML_SetCharacterDataHandler(parser.get(), on_text);
    XML_SetStartDoctypeDeclHandler(parser.get(), on_doctype);
    XML_SetEntityDeclHandler(parser.get(), on_entity_decl);
    XML_SetParamEntityParsing(parser.get(), XML_PARAM_ENTITY_PARSING_NEVER);

    // Fed in pieces that fit an int, as expat wants.
    constexpr std::size_t chunk = 1 << 20;
    std::size_t done = 0;
    do {
        const std::size_t n = std::min(chunk, xml.size() - done);
        const bool last = done + n == xml.size();
        if (XML_Parse(parser.get(), xml.data() + done, static_cast<int>(n),
                      last ? XML_TRUE : XML_FALSE) != XML_STATUS_OK ||
            st.failed)
            return std::nullopt;
        done += n;
    } while (done < xml.size());
    if (!st.root || !st.stack.empty())
        return std::nullopt;
    return std::move(st.root);
}

//--------------------------------------------------------------------------------------------------
// Writing

namespace {

struct writer {
    std::string out;
    /// Prefixes declared by the elements being written: (prefix, uri), innermost last.
    std::vector<std::pair<std::string, std::string>> prefixes;
    unsigned next_prefix = 0;

    const std::string* prefix_of(std::string_view uri) const {
        for (auto it = prefixes.rbegin(); it != prefixes.rend(); ++it)
            if (it->second == uri)
                return &it->first;
        return nullptr;
    }

    void declare(std::string prefix, std::string_view uri) {
        out += " xmlns:";
        out += prefix;
        out += "='";
        xml_escape_attribute(out, uri);
        out += '\'';
        prefixes.emplace_back(std::move(prefix), std::string(uri));
    }

    /// `parent_default`: the default namespace in scope; nullptr when unknown (the root).
    void write(const element& e, const std::string* parent_default) {
        const std::size_t scope = prefixes.size();
        const std::string* default_ns = parent_default;
        out += '<';
        // Stream elements keep the `stream` prefix clients look for (stream:features).
        const bool stream_element = e.ns == ns_stream;
        if (stream_element)
            out += "stream:";
        out += e.name;
        if (stream_element) {
            const std::string* p = prefix_of(ns_stream);
            if (!p || *p != "stream")
                declare("stream", ns_stream);
        } else if (!parent_default || *parent_default != e.ns) {
            out += " xmlns='";
            xml_escape_attribute(out, e.ns);
            out += '\'';
            default_ns = &e.ns;
        }
        for (const attribute& a : e.attributes) {
            std::string qname;
            if (a.ns.empty()) {
                qname = a.name;
            } else if (a.ns == ns_xml) {
                qname = "xml:" + a.name;
            } else {
                const std::string* p = prefix_of(a.ns);
                if (!p) {
                    declare("ns" + std::to_string(++next_prefix), a.ns);
                    p = &prefixes.back().first;
                }
                qname = *p + ':' + a.name;
            }
            out += ' ';
            out += qname;
            out += "='";
            xml_escape_attribute(out, a.value);
            out += '\'';
        }
        const bool empty =
            e.children.empty() && std::all_of(e.texts.begin(), e.texts.end(),
                                              [](const std::string& t) { return t.empty(); });
        if (empty) {
            out += "/>";
        } else {
            out += '>';
            for (std::size_t i = 0; i < e.children.size(); ++i) {
                xml_escape_text(out, e.texts[i]);
                write(e.children[i], default_ns);
            }
            xml_escape_text(out, e.texts.back());
            out += "</";
            if (stream_element)
                out += "stream:";
            out += e.name;
            out += '>';
        }
        prefixes.resize(scope);
    }
};

} // namespace

std::string serialize(const element& e) {
    writer w;
    w.write(e, nullptr);
    return std::move(w.out);
}

} // namespace megaphone::examples::xmpp
