// The BOSH codec (transport/bosh_codec.hpp): request decoding, payloads kept byte for byte with
// the namespaces they inherit from <body/>, refusal of what XEP-0124 §6 forbids, and every answer
// the codec writes, checked as exact bytes and parsed back.
#include "transport/bosh_codec.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using megaphone::bosh_body;
using megaphone::bosh_codec;
using megaphone::bosh_condition;
using megaphone::bosh_creation;
using megaphone::bosh_request;
using megaphone::bosh_type;
using megaphone::close_reason;
using megaphone::packet;
using megaphone::protocol_error;
using megaphone::session_info;
using namespace std::chrono_literals;
using namespace std::string_literals;

namespace {

const std::string httpbind = "xmlns='http://jabber.org/protocol/httpbind'";

bosh_request decode_ok(std::string_view text) {
    auto result = megaphone::decode_bosh_request(text);
    INFO(text);
    REQUIRE(std::holds_alternative<bosh_request>(result));
    return std::get<bosh_request>(std::move(result));
}

bool refused(std::string_view text) {
    auto result = megaphone::decode_bosh_request(text);
    return std::holds_alternative<protocol_error>(result) &&
           std::get<protocol_error>(result) == protocol_error::bad_request;
}

bosh_body parse_ok(std::string_view text) {
    auto result = megaphone::parse_bosh_body(text);
    INFO(text);
    REQUIRE(std::holds_alternative<bosh_body>(result));
    return std::get<bosh_body>(std::move(result));
}

std::string attr(const bosh_body& b, std::string_view name) {
    const std::string* v = b.attribute(name);
    return v ? *v : "<absent>";
}

/// A payload is standalone when it parses inside a <body/> that declares nothing it could use
/// (its prefix is private), and comes back unchanged: nothing left to carry.
void check_standalone(const std::string& payload) {
    const std::string wrapper =
        "<_b:body xmlns:_b='http://jabber.org/protocol/httpbind'>" + payload + "</_b:body>";
    auto result = megaphone::parse_bosh_body(wrapper);
    INFO(payload);
    REQUIRE(std::holds_alternative<bosh_body>(result));
    const auto& b = std::get<bosh_body>(result);
    REQUIRE(b.payloads.size() == 1);
    CHECK(b.payloads[0] == payload);
}

session_info terms(std::string_view sid) {
    return session_info{sid, 60s, 1, 2, 30s, 2s};
}

} // namespace

// ------------------------------------------------------------------------------------------------
// Decoding

TEST_CASE("bosh: a creation request with every attribute of XEP-0124 §7.1 and XEP-0206") {
    const auto req = decode_ok(
        "<body content='text/xml; charset=utf-8' hold='1' rid='1573741820' to='jabber.org' "
        "route='xmpp:jabber.org:9999' ver='1.6' wait='60' ack='1' xml:lang='en' from='me@x' "
        "newkey='ca393b51b682f61f98e7877d61146407f3d0a770' xmpp:version='1.0' "
        "xmlns:xmpp='urn:xmpp:xbosh' xmlns='http://jabber.org/protocol/httpbind'/>");
    CHECK(req.creation());
    CHECK(req.sid.empty());
    CHECK(req.rid == 1573741820u);
    CHECK(req.content == "text/xml; charset=utf-8");
    CHECK(req.hold == 1u);
    CHECK(req.wait == 60u);
    CHECK(req.to == "jabber.org");
    CHECK(req.route == "xmpp:jabber.org:9999");
    CHECK(req.ver == "1.6");
    CHECK(req.ack == 1u);
    CHECK(req.wants_acks());
    CHECK(req.lang == "en");
    CHECK(req.from == "me@x");
    CHECK(req.newkey == "ca393b51b682f61f98e7877d61146407f3d0a770");
    CHECK_FALSE(req.key);
    CHECK(req.xmpp_version == "1.0");
    CHECK_FALSE(req.restart);
    CHECK_FALSE(req.legacy());
    CHECK(req.poll());
    CHECK(req.type == bosh_type::none);
    CHECK_FALSE(req.pause);
    CHECK_FALSE(req.stream);
}

TEST_CASE("bosh: later requests: sid, ack, key, pause, terminate, stream, restart") {
    SECTION("data with a response ack and a key") {
        const auto req = decode_ok("<body rid='1249243566' sid='SomeSID' ack='1249243564' "
                                   "key='bfb06a6f113cd6fd3838ab9d300fdb4fe3da2f7d' " +
                                   httpbind + "/>");
        CHECK_FALSE(req.creation());
        CHECK(req.sid == "SomeSID");
        CHECK(req.ack == 1249243564u);
        CHECK_FALSE(req.wants_acks()); // only a creation's ack='1' is the flag
        CHECK(req.key == "bfb06a6f113cd6fd3838ab9d300fdb4fe3da2f7d");
    }
    SECTION("pause") {
        const auto req = decode_ok("<body rid='5' sid='s' pause='60' " + httpbind + "/>");
        CHECK(req.pause == 60u);
    }
    SECTION("terminate with a payload, and a stream") {
        const auto req =
            decode_ok("<body rid='7' sid='s' stream='second' type='terminate' " + httpbind +
                      "><presence type='unavailable' xmlns='jabber:client'/></body>");
        CHECK(req.terminate());
        CHECK(req.stream == "second");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<presence type='unavailable' xmlns='jabber:client'/>");
    }
    SECTION("a client-side binding error") {
        const auto req =
            decode_ok("<body rid='7' sid='s' type='error' condition='x' " + httpbind + "/>");
        CHECK(req.type == bosh_type::error);
        CHECK(req.condition == "x");
    }
    SECTION("xmpp:restart under another prefix, and '1' as true") {
        auto req = decode_ok("<body rid='8' sid='s' to='localhost' xml:lang='en' x:restart='true' "
                             "xmlns:x='urn:xmpp:xbosh' " +
                             httpbind + "/>");
        CHECK(req.restart);
        CHECK(req.lang == "en");
        req = decode_ok("<body rid='8' sid='s' bosh:restart='1' xmlns:bosh='urn:xmpp:xbosh' " +
                        httpbind + "/>");
        CHECK(req.restart);
        req = decode_ok("<body rid='8' sid='s' xmpp:restart='false' xmlns:xmpp='urn:xmpp:xbosh' " +
                        httpbind + "/>");
        CHECK_FALSE(req.restart);
    }
    SECTION("an xmpp:restart in a namespace other than urn:xmpp:xbosh is not a restart") {
        const auto req = decode_ok(
            "<body rid='8' sid='s' xmpp:restart='true' xmlns:xmpp='urn:other' " + httpbind + "/>");
        CHECK_FALSE(req.restart);
    }
    SECTION("unknown attributes are ignored, rid at the limits") {
        auto req = decode_ok("<body rid='0' sid='s' secure='true' authid='x' foo:bar='1' "
                             "xmlns:foo='urn:foo' " +
                             httpbind + "/>");
        CHECK(req.rid == 0u);
        req = decode_ok("<body rid='9007199254740991' " + httpbind + "/>");
        CHECK(req.rid == 9007199254740991u);
        req = decode_ok("<body rid='1' content='' " + httpbind + "/>");
        CHECK_FALSE(req.content);
        req = decode_ok("<body rid='1' wait='4294967295' hold='0' " + httpbind + "/>");
        CHECK(req.wait == 4294967295u);
        CHECK(req.hold == 0u);
        CHECK(req.legacy());
    }
    SECTION("a prefixed <body/>") {
        const auto req =
            decode_ok("<b:body xmlns:b='http://jabber.org/protocol/httpbind' rid='3' sid='s'/>");
        CHECK(req.rid == 3u);
        CHECK(req.sid == "s");
    }
    SECTION("an XML declaration, a byte-order mark and surrounding whitespace") {
        auto req = decode_ok("<?xml version='1.0' encoding='UTF-8'?>\n<body rid='4' " + httpbind +
                             "/>\r\n");
        CHECK(req.rid == 4u);
        req = decode_ok("\xEF\xBB\xBF<body rid='5' " + httpbind + "><a xmlns='urn:a'/></body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<a xmlns='urn:a'/>");
    }
}

TEST_CASE("bosh: to_client_request maps the transport-neutral fields") {
    SECTION("creation: ack='1' is a flag, not a response ack") {
        auto req = decode_ok("<body rid='10' wait='30' hold='1' ack='1' " + httpbind + "/>");
        const auto out = megaphone::to_client_request(std::move(req));
        CHECK(out.sid.empty());
        CHECK(out.rid == 10u);
        CHECK_FALSE(out.ack);
        CHECK(out.wait == 30u);
        CHECK(out.hold == 1u);
        CHECK_FALSE(out.terminate);
        CHECK(out.messages.empty());
    }
    SECTION("a terminate with payloads and an ack") {
        auto req = decode_ok("<body rid='11' sid='abc' ack='10' type='terminate' " + httpbind +
                             "><message xmlns='jabber:client'><body>bye</body></message>"
                             "<presence xmlns='jabber:client' type='unavailable'/></body>");
        const auto out = megaphone::to_client_request(std::move(req));
        CHECK(out.sid == "abc");
        CHECK(out.rid == 11u);
        CHECK(out.ack == 10u);
        CHECK(out.terminate);
        REQUIRE(out.messages.size() == 2);
        CHECK_FALSE(out.messages[0].is_json());
        CHECK(out.messages[0].text() ==
              "<message xmlns='jabber:client'><body>bye</body></message>");
        CHECK(out.messages[1].text() == "<presence xmlns='jabber:client' type='unavailable'/>");
    }
}

// ------------------------------------------------------------------------------------------------
// Payloads

TEST_CASE("bosh: payloads that declare their own namespace pass byte for byte") {
    SECTION("SASL auth (transcripts)") {
        const std::string auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                                 "mechanism='ANONYMOUS'/>";
        const auto req =
            decode_ok("<body rid='208499337' sid='3fb94e04' " + httpbind + ">" + auth + "</body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == auth);
        check_standalone(req.payloads[0]);
    }
    SECTION("entity and character references, CDATA, quotes and line ends stay as sent") {
        const std::string stanza = "<message to=\"a&amp;b@x\" xmlns='jabber:client'\r\n"
                                   "  id='&#x41;&apos;'><body>1 &lt; 2 &amp;&#233; \xC3\xA9"
                                   "<![CDATA[<not-a-tag/> & ]]></body></message >";
        const auto req =
            decode_ok("<body rid='1' sid='s' " + httpbind + ">\n  " + stanza + "\n</body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == stanza);
        check_standalone(req.payloads[0]);
    }
    SECTION("several payloads, whitespace between them dropped, order kept") {
        const auto req = decode_ok("<body rid='1' sid='s' " + httpbind +
                                   ">\n <a xmlns='urn:a'/>\t<b xmlns='urn:b'>x</b>\r\n"
                                   "<c xmlns='urn:c'><c/></c> </body>");
        REQUIRE(req.payloads.size() == 3);
        CHECK(req.payloads[0] == "<a xmlns='urn:a'/>");
        CHECK(req.payloads[1] == "<b xmlns='urn:b'>x</b>");
        CHECK(req.payloads[2] == "<c xmlns='urn:c'><c/></c>");
    }
    SECTION("an empty element with spaces before '/>' and an end tag with spaces") {
        const auto req = decode_ok("<body rid='1' sid='s' " + httpbind +
                                   "><a xmlns='urn:a'  /><b xmlns='urn:b'></b  ></body>");
        REQUIRE(req.payloads.size() == 2);
        CHECK(req.payloads[0] == "<a xmlns='urn:a'  />");
        CHECK(req.payloads[1] == "<b xmlns='urn:b'></b  >");
    }
}

TEST_CASE("bosh: namespaces declared on <body/> are carried onto the payloads that use them") {
    SECTION("the default namespace jabber:client declared on a prefixed body") {
        const auto req = decode_ok(
            "<hb:body rid='1' sid='s' xmlns:hb='http://jabber.org/protocol/httpbind' "
            "xmlns='jabber:client'><message to='x@y' type='chat'><body>hi</body></message>"
            "<presence/></hb:body>");
        REQUIRE(req.payloads.size() == 2);
        CHECK(req.payloads[0] ==
              "<message xmlns='jabber:client' to='x@y' type='chat'><body>hi</body></message>");
        CHECK(req.payloads[1] == "<presence xmlns='jabber:client'/>");
        for (const auto& p : req.payloads)
            check_standalone(p);
    }
    SECTION("stream features with the stream prefix, and only the prefixes used") {
        const auto req = decode_ok(
            "<body rid='1' sid='s' " + httpbind +
            " xmlns:xmpp='urn:xmpp:xbosh' xmlns:stream='http://etherx.jabber.org/streams'>"
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            "<mechanism>ANONYMOUS</mechanism></mechanisms></stream:features></body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
                                 "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                                 "<mechanism>ANONYMOUS</mechanism></mechanisms></stream:features>");
        check_standalone(req.payloads[0]);
    }
    SECTION("a prefix used only deep inside, or only by an attribute") {
        const auto req = decode_ok("<body rid='1' sid='s' " + httpbind +
                                   " xmlns:p='urn:p' xmlns:q='urn:q' xmlns:unused='urn:u'>"
                                   "<message xmlns='jabber:client'><x><p:deep/></x></message>"
                                   "<iq xmlns='jabber:client' q:flag='1'/></body>");
        REQUIRE(req.payloads.size() == 2);
        CHECK(req.payloads[0] ==
              "<message xmlns:p='urn:p' xmlns='jabber:client'><x><p:deep/></x></message>");
        CHECK(req.payloads[1] == "<iq xmlns:q='urn:q' xmlns='jabber:client' q:flag='1'/>");
        for (const auto& p : req.payloads)
            check_standalone(p);
    }
    SECTION("carried in the order <body/> declared them") {
        const auto req = decode_ok("<body rid='1' sid='s' " + httpbind +
                                   " xmlns:b='urn:b' xmlns:a='urn:a'><a:x b:y='1'/></body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<a:x xmlns:b='urn:b' xmlns:a='urn:a' b:y='1'/>");
    }
    SECTION("nothing carried for a prefix the payload declares itself, even when redeclared") {
        const auto req =
            decode_ok("<body rid='1' sid='s' " + httpbind +
                      " xmlns:stream='http://etherx.jabber.org/streams'>"
                      "<stream:error xmlns:stream='urn:other'><x xmlns='urn:x'/></stream:error>"
                      "<a xmlns='urn:a'><stream:b xmlns:stream='urn:s2'/></a></body>");
        REQUIRE(req.payloads.size() == 2);
        CHECK(req.payloads[0] ==
              "<stream:error xmlns:stream='urn:other'><x xmlns='urn:x'/></stream:error>");
        CHECK(req.payloads[1] == "<a xmlns='urn:a'><stream:b xmlns:stream='urn:s2'/></a>");
    }
    SECTION("a prefix declared inside one branch does not cover its sibling") {
        const auto req = decode_ok("<body rid='1' sid='s' " + httpbind +
                                   " xmlns:p='urn:p'><a xmlns='urn:a'><b xmlns:p='urn:inner'>"
                                   "<p:c/></b><p:d/></a></body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<a xmlns:p='urn:p' xmlns='urn:a'><b xmlns:p='urn:inner'>"
                                 "<p:c/></b><p:d/></a>");
        check_standalone(req.payloads[0]);
    }
    SECTION("an unqualified payload in the httpbind namespace keeps it (no rewriting)") {
        const auto req = decode_ok("<body rid='1' sid='s' " + httpbind + "><message/></body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<message xmlns='http://jabber.org/protocol/httpbind'/>");
    }
    SECTION("a payload in no namespace stays in none; xml:lang needs no declaration") {
        const auto req =
            decode_ok("<hb:body rid='1' sid='s' xmlns:hb='http://jabber.org/protocol/httpbind' "
                      "xml:lang='en'><plain xml:lang='fr'>x</plain></hb:body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<plain xml:lang='fr'>x</plain>");
        check_standalone(req.payloads[0]);
    }
    SECTION("an undeclared default namespace (xmlns='') is the payload's own") {
        const auto req =
            decode_ok("<hb:body rid='1' sid='s' xmlns:hb='http://jabber.org/protocol/httpbind' "
                      "xmlns='jabber:client'><m xmlns=''><n/></m></hb:body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<m xmlns=''><n/></m>");
    }
    SECTION("a carried URI is re-escaped") {
        const auto req = decode_ok("<body rid='1' sid='s' " + httpbind +
                                   " xmlns:p=\"urn:a&amp;b'c\"><p:x/></body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<p:x xmlns:p='urn:a&amp;b&apos;c'/>");
        check_standalone(req.payloads[0]);
    }
    SECTION("a multi-byte element name") {
        const auto req = decode_ok("<body rid='1' sid='s' " + httpbind +
                                   " xmlns:p='urn:p'><p:\xC3\xA9l\xC3\xA8ve a='1'/></body>");
        REQUIRE(req.payloads.size() == 1);
        CHECK(req.payloads[0] == "<p:\xC3\xA9l\xC3\xA8ve xmlns:p='urn:p' a='1'/>");
    }
}

// ------------------------------------------------------------------------------------------------
// Refusals

TEST_CASE("bosh: malformed or forbidden bodies are bad-request") {
    const std::string ns = " " + httpbind;
    const std::vector<std::pair<const char*, std::string>> cases = {
        {"empty", ""},
        {"whitespace only", "  \n"},
        {"not XML", "this is not xml"},
        {"JSON", "{\"rid\": 1}"},
        {"wrong root", "<iq type='get' id='x' xmlns='jabber:client'/>"},
        {"no namespace", "<body rid='896146609' to='localhost' wait='60' hold='1' ver='1.6'/>"},
        {"wrong namespace", "<body rid='1' xmlns='urn:other'/>"},
        {"wrong namespace, prefixed", "<b:body rid='1' xmlns:b='urn:other'/>"},
        {"httpbind, wrong name", "<bodyx rid='1'" + ns + "/>"},
        {"DTD", "<!DOCTYPE body><body rid='1'" + ns + "/>"},
        {"DTD with entities",
         "<!DOCTYPE body [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;'>]>"
         "<body rid='1'" +
             ns + "><m xmlns='urn:m'>&b;</m></body>"},
        {"comment in the prolog", "<!-- hi --><body rid='1'" + ns + "/>"},
        {"comment in body", "<body rid='1'" + ns + "><!-- hi --></body>"},
        {"comment in a payload", "<body rid='1'" + ns + "><m xmlns='urn:m'><!--x--></m></body>"},
        {"comment after the root", "<body rid='1'" + ns + "/><!-- hi -->"},
        {"PI in the prolog", "<?xml-stylesheet href='x'?><body rid='1'" + ns + "/>"},
        {"PI in a payload", "<body rid='1'" + ns + "><m xmlns='urn:m'><?pi x?></m></body>"},
        {"undefined entity", "<body rid='1'" + ns + "><m xmlns='urn:m'>&nbsp;</m></body>"},
        {"undefined entity in an attribute", "<body rid='1' to='&x;'" + ns + "/>"},
        {"text in body", "<body rid='1'" + ns + ">hello</body>"},
        {"text between payloads",
         "<body rid='1'" + ns + "><a xmlns='urn:a'/> x <b xmlns='urn:b'/></body>"},
        {"text via a character reference", "<body rid='1'" + ns + ">&#65;</body>"},
        {"text via CDATA", "<body rid='1'" + ns + "><![CDATA[x]]></body>"},
        {"rid missing", "<body sid='s'" + ns + "/>"},
        {"rid empty", "<body rid=''" + ns + "/>"},
        {"rid negative", "<body rid='-1'" + ns + "/>"},
        {"rid with a sign", "<body rid='+1'" + ns + "/>"},
        {"rid with spaces", "<body rid=' 1'" + ns + "/>"},
        {"rid not an integer", "<body rid='1.0'" + ns + "/>"},
        {"rid hexadecimal", "<body rid='0x10'" + ns + "/>"},
        {"rid 2^53", "<body rid='9007199254740992'" + ns + "/>"},
        {"rid beyond 64 bits", "<body rid='99999999999999999999999'" + ns + "/>"},
        {"ack negative", "<body rid='1' sid='s' ack='-1'" + ns + "/>"},
        {"ack 2^53", "<body rid='1' sid='s' ack='9007199254740992'" + ns + "/>"},
        {"wait negative", "<body rid='1' wait='-1'" + ns + "/>"},
        {"wait beyond 32 bits", "<body rid='1' wait='4294967296'" + ns + "/>"},
        {"hold not a number", "<body rid='1' hold='one'" + ns + "/>"},
        {"pause negative", "<body rid='1' sid='s' pause='-5'" + ns + "/>"},
        {"unknown type", "<body rid='1' sid='s' type='bogus'" + ns + "/>"},
        {"empty sid", "<body rid='1' sid=''" + ns + "/>"},
        {"restart not a boolean",
         "<body rid='1' sid='s' x:restart='yes' xmlns:x='urn:xmpp:xbosh'" + ns + "/>"},
        {"content with a line break (header injection)",
         "<body rid='1' content='text/xml&#13;&#10;X-Evil: 1'" + ns + "/>"},
        {"unclosed payload (transcript)",
         "<body rid='430289515' xmlns='http://jabber.org/protocol/httpbind' "
         "to='localhost'><message></body>"},
        {"mismatched tags (transcript)",
         "<body rid='663020453' sid='ca3b' xmlns='http://jabber.org/protocol/httpbind'>"
         "<message to='x'><body>oops</message></body>"},
        {"unclosed body", "<body rid='1'" + ns + ">"},
        {"unclosed body with a payload", "<body rid='1'" + ns + "><a xmlns='urn:a'/>"},
        {"truncated start tag", "<body rid='1'" + ns},
        {"two roots", "<body rid='1'" + ns + "/><body rid='2'" + ns + "/>"},
        {"junk after the root", "<body rid='1'" + ns + "/>x"},
        {"unbound prefix", "<body rid='1'" + ns + "><foo:bar/></body>"},
        {"unbound attribute prefix", "<body rid='1' foo:x='1'" + ns + "/>"},
        {"duplicate attribute", "<body rid='1' rid='2'" + ns + "/>"},
        {"duplicate expanded attribute",
         "<body rid='1' a:x='1' b:x='2' xmlns:a='urn:a' xmlns:b='urn:a'" + ns + "/>"},
        {"'<' in an attribute", "<body rid='1' to='a<b'" + ns + "/>"},
        {"bare '&'", "<body rid='1'" + ns + "><m xmlns='urn:m'>a & b</m></body>"},
        {"declared Latin-1",
         "<?xml version='1.0' encoding='ISO-8859-1'?><body rid='1'" + ns + "/>"},
        {"invalid UTF-8", "<body rid='1'" + ns + "><m xmlns='urn:m'>\xFF</m></body>"},
        {"NUL byte", "<body rid='1'" + ns + "><m xmlns='urn:m'>\0</m></body>"s},
        {"UTF-16", "\xFF\xFE<\0b\0o\0d\0y\0/\0>\0"s},
        {"nesting over the limit",
         [&] {
             std::string s = "<body rid='1'" + ns + ">";
             // <body/> is level 1: bosh_max_depth elements inside it go one level too deep.
             for (int i = 0; i < megaphone::bosh_max_depth; ++i)
                 s += "<a xmlns='urn:a'>";
             for (int i = 0; i < megaphone::bosh_max_depth; ++i)
                 s += "</a>";
             return s + "</body>";
         }()},
    };
    for (const auto& [name, body] : cases) {
        INFO(name);
        CHECK(refused(body));
    }
}

TEST_CASE("bosh: nesting up to the limit is fine") {
    std::string inner;
    for (int i = 1; i < megaphone::bosh_max_depth; ++i)
        inner += "<a xmlns='urn:a'>";
    for (int i = 1; i < megaphone::bosh_max_depth; ++i)
        inner += "</a>";
    const auto req = decode_ok("<body rid='1' " + httpbind + ">" + inner + "</body>");
    REQUIRE(req.payloads.size() == 1);
    CHECK(req.payloads[0] == inner);
}

TEST_CASE("bosh: hostile sizes are refused quickly") {
    const auto started = std::chrono::steady_clock::now();
    SECTION("a megabyte of open tags") {
        std::string s = "<body rid='1' " + httpbind + ">";
        for (int i = 0; i < 200'000; ++i)
            s += "<a>";
        CHECK(refused(s));
    }
    SECTION("a megabyte of text directly in body") {
        CHECK(refused("<body rid='1' " + httpbind + ">" + std::string(1 << 20, 'x') + "</body>"));
    }
    SECTION("a megabyte-long unclosed attribute") {
        CHECK(refused("<body rid='1' to='" + std::string(1 << 20, 'x')));
    }
    CHECK(std::chrono::steady_clock::now() - started < 2s);
}

// ------------------------------------------------------------------------------------------------
// Answers

TEST_CASE("bosh: data answers") {
    const auto& codec = bosh_codec::instance();
    CHECK(codec.kind() == megaphone::content_kind::xml);
    CHECK(codec.data(5, {}).view() == "<body xmlns='http://jabber.org/protocol/httpbind'/>");
    const packet stanzas[] = {
        packet::from("<message xmlns='jabber:client'><body>a</body></message>"),
        packet::from("<presence xmlns='jabber:client'/>")};
    const auto answer = codec.data(5, stanzas);
    CHECK(answer.view() == "<body xmlns='http://jabber.org/protocol/httpbind'>"
                           "<message xmlns='jabber:client'><body>a</body></message>"
                           "<presence xmlns='jabber:client'/></body>");
    const auto back = parse_ok(answer.view());
    REQUIRE(back.payloads.size() == 2);
    CHECK(back.payloads[0] == stanzas[0].view());
    CHECK(back.payloads[1] == stanzas[1].view());

    CHECK(bosh_codec::data_answer({}, 1249243564).view() ==
          "<body ack='1249243564' xmlns='http://jabber.org/protocol/httpbind'/>");
    CHECK(bosh_codec::report_answer(1249243565, 852ms).view() ==
          "<body report='1249243565' time='852' xmlns='http://jabber.org/protocol/httpbind'/>");
}

TEST_CASE("bosh: terminate, error and replaced answers") {
    const auto& codec = bosh_codec::instance();
    CHECK(codec.terminated(9).view() ==
          "<body type='terminate' xmlns='http://jabber.org/protocol/httpbind'/>");
    CHECK(codec.replaced(9).view() ==
          "<body type='error' xmlns='http://jabber.org/protocol/httpbind'/>");

    const std::vector<std::pair<close_reason, std::string>> closings = {
        {close_reason::client_terminate, ""},
        {close_reason::server_terminate, ""},
        {close_reason::inactivity, ""},
        {close_reason::queue_overflow, "policy-violation"},
        {close_reason::item_not_found, "item-not-found"},
        {close_reason::policy_violation, "policy-violation"},
        {close_reason::bad_request, "bad-request"},
        {close_reason::system_shutdown, "system-shutdown"},
    };
    for (const auto& [why, condition] : closings) {
        INFO(megaphone::to_string(why));
        const auto answer = codec.closing(1, why);
        const std::string expected =
            condition.empty()
                ? "<body type='terminate' xmlns='http://jabber.org/protocol/httpbind'/>"
                : "<body type='terminate' condition='" + condition +
                      "' xmlns='http://jabber.org/protocol/httpbind'/>";
        CHECK(answer.view() == expected);
        const auto back = parse_ok(answer.view());
        CHECK(attr(back, "type") == "terminate");
        CHECK(attr(back, "condition") == (condition.empty() ? "<absent>" : condition));
    }

    const std::vector<std::pair<protocol_error, std::string>> errors = {
        {protocol_error::item_not_found, "item-not-found"},
        {protocol_error::bad_request, "bad-request"},
        {protocol_error::too_large, "policy-violation"},
        {protocol_error::policy_violation, "policy-violation"},
        {protocol_error::system_shutdown, "system-shutdown"},
    };
    for (const auto& [e, condition] : errors) {
        INFO(condition);
        CHECK(codec.error(e).view() == "<body type='terminate' condition='" + condition +
                                           "' xmlns='http://jabber.org/protocol/httpbind'/>");
    }
}

TEST_CASE("bosh: every terminal binding condition of §17.2") {
    const std::vector<std::pair<bosh_condition, std::string>> all = {
        {bosh_condition::bad_request, "bad-request"},
        {bosh_condition::host_gone, "host-gone"},
        {bosh_condition::host_unknown, "host-unknown"},
        {bosh_condition::improper_addressing, "improper-addressing"},
        {bosh_condition::internal_server_error, "internal-server-error"},
        {bosh_condition::item_not_found, "item-not-found"},
        {bosh_condition::other_request, "other-request"},
        {bosh_condition::policy_violation, "policy-violation"},
        {bosh_condition::remote_connection_failed, "remote-connection-failed"},
        {bosh_condition::remote_stream_error, "remote-stream-error"},
        {bosh_condition::see_other_uri, "see-other-uri"},
        {bosh_condition::system_shutdown, "system-shutdown"},
        {bosh_condition::undefined_condition, "undefined-condition"},
    };
    for (const auto& [c, name] : all) {
        INFO(name);
        CHECK(megaphone::to_string(c) == name);
        const auto back = parse_ok(bosh_codec::terminate_answer(c).view());
        CHECK(attr(back, "type") == "terminate");
        CHECK(attr(back, "condition") == name);
        CHECK(back.payloads.empty());
    }
    CHECK(bosh_codec::terminate_answer(bosh_condition::host_unknown).view() ==
          "<body type='terminate' condition='host-unknown' "
          "xmlns='http://jabber.org/protocol/httpbind'/>");

    SECTION("undefined-condition with application information") {
        const packet info[] = {packet::from("<why xmlns='urn:app'>quota</why>")};
        CHECK(
            bosh_codec::terminate_answer(bosh_condition::undefined_condition, info).view() ==
            "<body type='terminate' condition='undefined-condition' "
            "xmlns='http://jabber.org/protocol/httpbind'><why xmlns='urn:app'>quota</why></body>");
    }
    SECTION("see-other-uri carries an escaped <uri/>") {
        const auto answer = bosh_codec::see_other_uri("https://x.example/bosh?a=1&b=<2>");
        CHECK(answer.view() == "<body type='terminate' condition='see-other-uri' "
                               "xmlns='http://jabber.org/protocol/httpbind'>"
                               "<uri>https://x.example/bosh?a=1&amp;b=&lt;2&gt;</uri></body>");
        const auto back = parse_ok(answer.view());
        REQUIRE(back.payloads.size() == 1);
        // <uri/> has no namespace of its own: read back, it is in httpbind's (the schema's).
        CHECK(back.payloads[0] == "<uri xmlns='http://jabber.org/protocol/httpbind'>"
                                  "https://x.example/bosh?a=1&amp;b=&lt;2&gt;</uri>");
    }
    SECTION("remote-stream-error: stanzas, then a copy of <stream:error/>, stream prefix bound") {
        const std::string error = "<stream:error><connection-timeout "
                                  "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
        const packet before[] = {packet::from("<message xmlns='jabber:client'/>")};
        const auto answer = bosh_codec::remote_stream_error(error, before);
        CHECK(answer.view() == "<body type='terminate' condition='remote-stream-error' "
                               "xmlns='http://jabber.org/protocol/httpbind' "
                               "xmlns:stream='http://etherx.jabber.org/streams'>"
                               "<message xmlns='jabber:client'/>" +
                                   error + "</body>");
        const auto back = parse_ok(answer.view());
        CHECK(*back.namespace_uri("stream") == "http://etherx.jabber.org/streams");
        REQUIRE(back.payloads.size() == 2);
        CHECK(back.payloads[1] ==
              "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><connection-timeout "
              "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>");
    }
}

TEST_CASE("bosh: created() answers from session_info alone") {
    const packet pushed[] = {packet::from("<hello xmlns='urn:app'/>")};
    const auto answer = bosh_codec::instance().created(terms("n0-abc"), 77, pushed);
    CHECK(answer.view() == "<body sid='n0-abc' wait='60' requests='2' hold='1' inactivity='30' "
                           "polling='2' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'>"
                           "<hello xmlns='urn:app'/></body>");
    const auto back = parse_ok(answer.view());
    CHECK(attr(back, "sid") == "n0-abc");
    CHECK(attr(back, "wait") == "60");
    CHECK(attr(back, "requests") == "2");
    CHECK(attr(back, "hold") == "1");
    CHECK(attr(back, "inactivity") == "30");
    CHECK(attr(back, "polling") == "2");
    CHECK(attr(back, "ver") == "1.6");
    CHECK(attr(back, "ack") == "<absent>");
    CHECK(attr(back, "{urn:xmpp:xbosh}version") == "<absent>");
    REQUIRE(back.payloads.size() == 1);
    CHECK(back.payloads[0] == "<hello xmlns='urn:app'/>");

    SECTION("no packets: an empty element; seconds rounded safely") {
        const session_info odd{"s", 1500ms, 0, 1, 45500ms, 2100ms};
        const auto empty = bosh_codec::instance().created(odd, 1, {});
        CHECK(empty.view() ==
              "<body sid='s' wait='1' requests='1' hold='0' inactivity='45' "
              "polling='3' ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>");
    }
}

TEST_CASE("bosh: the full creation answer (§7.2, XEP-0206)") {
    const auto req = decode_ok("<body rid='22360566' " + httpbind +
                               " to='localhost' xml:lang='en' wait='60' hold='1' "
                               "content='text/xml; charset=utf-8' ver='1.11' ack='1' "
                               "xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>");
    auto creation = bosh_creation::answer_to(req, terms("n0-xyz"));
    CHECK(creation.ver == "1.6");
    CHECK(creation.from == "localhost");
    CHECK(creation.ack == 22360566u);
    CHECK(creation.xmpp_version == "1.0");
    creation.maxpause = 120s;
    creation.accept = "deflate,gzip";
    creation.charsets = "ISO_8859-1 ISO-2022-JP";

    const packet features[] = {
        packet::from("<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                     "<mechanism>ANONYMOUS</mechanism></mechanisms></stream:features>")};
    const auto answer = bosh_codec::creation_answer(creation, features);
    CHECK(answer.view() ==
          "<body sid='n0-xyz' wait='60' requests='2' hold='1' inactivity='30' polling='2' "
          "ver='1.6' maxpause='120' from='localhost' ack='22360566' accept='deflate,gzip' "
          "charsets='ISO_8859-1 ISO-2022-JP' xmpp:version='1.0' xmpp:restartlogic='true' "
          "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' "
          "xmlns:stream='http://etherx.jabber.org/streams'><stream:features>"
          "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>ANONYMOUS</mechanism>"
          "</mechanisms></stream:features></body>");

    const auto back = parse_ok(answer.view());
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"sid", "n0-xyz"},
        {"wait", "60"},
        {"requests", "2"},
        {"hold", "1"},
        {"inactivity", "30"},
        {"polling", "2"},
        {"ver", "1.6"},
        {"maxpause", "120"},
        {"from", "localhost"},
        {"ack", "22360566"},
        {"accept", "deflate,gzip"},
        {"charsets", "ISO_8859-1 ISO-2022-JP"},
        {"{urn:xmpp:xbosh}version", "1.0"},
        {"{urn:xmpp:xbosh}restartlogic", "true"},
    };
    CHECK(back.attributes == expected);
    CHECK(*back.namespace_uri("") == "http://jabber.org/protocol/httpbind");
    CHECK(*back.namespace_uri("xmpp") == "urn:xmpp:xbosh");
    CHECK(*back.namespace_uri("stream") == "http://etherx.jabber.org/streams");
    REQUIRE(back.payloads.size() == 1);
    CHECK(back.payloads[0].rfind("<stream:features xmlns:stream='http://etherx.jabber.org/"
                                 "streams'><mechanisms",
                                 0) == 0);

    SECTION("a legacy, non-XMPP client without acks gets none of the optional attributes") {
        const auto plain = decode_ok("<body rid='3' wait='10' hold='1' " + httpbind + "/>");
        const auto c = bosh_creation::answer_to(plain, terms("s"));
        CHECK(c.ver == "1.6");
        CHECK(c.from.empty());
        CHECK_FALSE(c.ack);
        CHECK(c.xmpp_version.empty());
        CHECK(bosh_codec::creation_answer(c, {}).view() ==
              "<body sid='s' wait='60' requests='2' hold='1' inactivity='30' polling='2' "
              "ver='1.6' xmlns='http://jabber.org/protocol/httpbind'/>");
    }
    SECTION("attribute values are escaped") {
        bosh_creation c{terms("a'b&c")};
        c.from = "<x>\"";
        const auto escaped = bosh_codec::creation_answer(c, {});
        const auto again = parse_ok(escaped.view());
        CHECK(attr(again, "sid") == "a'b&c");
        CHECK(attr(again, "from") == "<x>\"");
    }
}

TEST_CASE("bosh: a JSON value travels as a XEP-0335 payload") {
    const auto p =
        bosh_codec::instance().encode(nlohmann::json{{"channel", "news"}, {"data", "<b>&\"x\""}});
    CHECK(p.view() == "<json xmlns='urn:xmpp:json:0'>"
                      "{\"channel\":\"news\",\"data\":\"&lt;b&gt;&amp;\\\"x\\\"\"}</json>");
    const packet one[] = {p};
    const auto back = parse_ok(bosh_codec::instance().data(1, one).view());
    REQUIRE(back.payloads.size() == 1);
    CHECK(back.payloads[0] == p.view());
}

TEST_CASE("bosh: version negotiation (§7.2: minor numbers are integers)") {
    using megaphone::negotiate_bosh_version;
    CHECK(negotiate_bosh_version(std::nullopt) == "1.6");
    CHECK(negotiate_bosh_version("1.6") == "1.6");
    CHECK(negotiate_bosh_version("1.11") == "1.6");
    CHECK(negotiate_bosh_version("1.10") == "1.6");
    CHECK(negotiate_bosh_version("2.0") == "1.6");
    CHECK(negotiate_bosh_version("1.5") == "1.5");
    CHECK(negotiate_bosh_version("1.05") == "1.5");
    CHECK(negotiate_bosh_version("0.9") == "0.9");
    CHECK(negotiate_bosh_version("garbage") == "1.6");
    CHECK(negotiate_bosh_version("1.") == "1.6");
    CHECK(negotiate_bosh_version("") == "1.6");
}

TEST_CASE("bosh: answer Content-Type (§7.1)") {
    using megaphone::bosh_content_type;
    CHECK(bosh_content_type(std::nullopt) == "text/xml; charset=utf-8");
    CHECK(bosh_content_type("text/html") == "text/html");
    CHECK(bosh_content_type("text/xml\r\nX-Evil: 1") == "text/xml; charset=utf-8");
    CHECK(bosh_content_type("") == "text/xml; charset=utf-8");
    CHECK(megaphone::content_type(megaphone::content_kind::xml) == "text/xml; charset=utf-8");
}

TEST_CASE("bosh: legacy clients get HTTP error codes with empty bodies (§17.1)") {
    using megaphone::bosh_error_response;
    struct row {
        protocol_error e;
        unsigned legacy_status;
        std::string condition;
    };
    const std::vector<row> rows = {
        {protocol_error::bad_request, 400, "bad-request"},
        {protocol_error::policy_violation, 403, "policy-violation"},
        {protocol_error::too_large, 403, "policy-violation"},
        {protocol_error::item_not_found, 404, "item-not-found"},
        {protocol_error::system_shutdown, 200, "system-shutdown"},
    };
    for (const auto& r : rows) {
        INFO(r.condition);
        const auto modern = bosh_error_response(r.e, /*legacy=*/false);
        CHECK(modern.status == 200);
        CHECK(modern.kind == megaphone::content_kind::xml);
        CHECK(modern.body.view() == "<body type='terminate' condition='" + r.condition +
                                        "' xmlns='http://jabber.org/protocol/httpbind'/>");
        const auto legacy = bosh_error_response(r.e, /*legacy=*/true);
        CHECK(legacy.status == r.legacy_status);
        CHECK(legacy.kind == megaphone::content_kind::xml);
        if (r.legacy_status == 200)
            CHECK(legacy.body.view() == modern.body.view());
        else
            CHECK(legacy.body.empty());
    }
    CHECK(megaphone::bosh_legacy_status("item-not-found") == 404u);
    CHECK(megaphone::bosh_legacy_status("bad-request") == 400u);
    CHECK(megaphone::bosh_legacy_status("policy-violation") == 403u);
    CHECK_FALSE(megaphone::bosh_legacy_status("system-shutdown"));
    CHECK_FALSE(megaphone::bosh_legacy_status(""));
}
