// libFuzzer target: the BOSH codec. parse_bosh_body() and decode_bosh_request() on any bytes;
// for what parses, every payload must be standalone-valid (the namespaces it uses carried into
// it): wrapped alone in a plain httpbind <body/>, it parses as one payload, and in a prefixed
// <b:body/> (no default namespace in scope) it parses back to exactly itself.
// What decodes must convert with to_client_request(), and the answers built from the payloads
// must parse back with the same payloads (a payload in no namespace excepted: inside the
// answer's default-namespace <body/> it reads as httpbind's, see fuzz_bosh_codec.cpp).
#include "transport/bosh_codec.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
    std::fprintf(stderr, "fuzz_bosh_codec: %s\n%.*s\n", what, static_cast<int>(detail.size()),
                 detail.data());
    std::abort();
}

/// Returns each payload as a reader of an answer sees it: inside a <body/> whose default
/// namespace is httpbind (a payload in no namespace gets that one carried in).
std::vector<std::string> check_standalone(const std::vector<std::string>& payloads) {
    std::vector<std::string> in_answer;
    for (const auto& payload : payloads) {
        // In the usual wrapper it parses, as one payload.
        const std::string wrapped =
            "<body xmlns='http://jabber.org/protocol/httpbind'>" + payload + "</body>";
        auto again = megaphone::parse_bosh_body(wrapped);
        auto* body = std::get_if<megaphone::bosh_body>(&again);
        if (!body)
            fail("a payload does not parse standalone", wrapped);
        if (body->payloads.size() != 1)
            fail("a payload is not one element", wrapped);
        // In a wrapper that puts nothing in scope (no default namespace: a payload in no
        // namespace stays there), every namespace it uses is declared in it already, so
        // parsing it again adds nothing.
        const std::string bare =
            "<b:body xmlns:b='http://jabber.org/protocol/httpbind'>" + payload + "</b:body>";
        auto bare_again = megaphone::parse_bosh_body(bare);
        auto* bare_body = std::get_if<megaphone::bosh_body>(&bare_again);
        if (!bare_body || bare_body->payloads.size() != 1)
            fail("a payload does not parse in a prefixed wrapper", bare);
        if (bare_body->payloads.front() != payload)
            fail("a standalone payload changed when parsed again", bare);
        in_answer.push_back(body->payloads.front());
    }
    return in_answer;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view xml{reinterpret_cast<const char*>(data), size};

    auto parsed = megaphone::parse_bosh_body(xml);
    if (auto* body = std::get_if<megaphone::bosh_body>(&parsed)) {
        check_standalone(body->payloads);
        for (const auto& [name, value] : body->attributes)
            (void)body->attribute(name);
        for (const auto& [prefix, uri] : body->namespaces)
            if (!body->namespace_uri(prefix))
                fail("a declared prefix is not found");
    } else if (std::get<megaphone::protocol_error>(parsed) !=
               megaphone::protocol_error::bad_request) {
        fail("a parse error other than bad_request");
    }

    auto decoded = megaphone::decode_bosh_request(xml);
    if (auto* e = std::get_if<megaphone::protocol_error>(&decoded)) {
        if (*e != megaphone::protocol_error::bad_request)
            fail("a decoding error other than bad_request");
        return 0;
    }
    if (!std::holds_alternative<megaphone::bosh_body>(parsed))
        fail("decode_bosh_request accepted what parse_bosh_body refused");
    auto req = std::get<megaphone::bosh_request>(std::move(decoded));
    if (req.payloads != std::get<megaphone::bosh_body>(parsed).payloads)
        fail("decode_bosh_request and parse_bosh_body disagree on the payloads");
    const auto expected = check_standalone(req.payloads);

    (void)megaphone::negotiate_bosh_version(req.ver);
    const std::string_view ct = megaphone::bosh_content_type(req.content);
    for (char c : ct)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            fail("an unsafe Content-Type", ct);

    // Answers carrying the payloads parse back with the same payloads (as read in an answer).
    std::vector<megaphone::packet> packets;
    for (const auto& p : req.payloads)
        packets.push_back(megaphone::packet::from(p));
    const auto& codec = megaphone::bosh_codec::instance();
    const megaphone::session_info info{"fuzz-sid",
                                       std::chrono::seconds(req.wait.value_or(60)),
                                       req.hold.value_or(1),
                                       2,
                                       std::chrono::seconds(60),
                                       std::chrono::seconds(2)};
    auto creation = megaphone::bosh_creation::answer_to(req, info);
    for (const auto& answer :
         {codec.data(req.rid, packets), megaphone::bosh_codec::creation_answer(creation, packets)}) {
        auto back = megaphone::parse_bosh_body(answer.view());
        auto* body = std::get_if<megaphone::bosh_body>(&back);
        if (!body)
            fail("an answer does not parse", answer.view());
        if (body->payloads != expected)
            fail("an answer changed the payloads", answer.view());
    }

    const std::size_t n = req.payloads.size();
    const bool sid_empty = req.sid.empty();
    const auto rid = req.rid;
    auto client = megaphone::to_client_request(std::move(req));
    if (client.messages.size() != n || client.rid != rid || client.sid.empty() != sid_empty)
        fail("to_client_request lost something");
    for (const auto& m : client.messages)
        if (m.is_json())
            fail("a BOSH payload became a JSON message");
    if (!client.bosh)
        fail("to_client_request dropped the BOSH attributes");
    return 0;
}
