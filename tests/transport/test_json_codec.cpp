// The JSON transport's codec (docs/PROTOCOL.md): decode_json_request on valid and malformed
// bodies, and the exact bytes of every answer the encoder writes.
#include "transport/json_codec.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

using megaphone::client_request;
using megaphone::close_reason;
using megaphone::decode_json_request;
using megaphone::json_codec;
using megaphone::packet;
using megaphone::protocol_error;
using megaphone::request_id;
using megaphone::session_info;
using json = nlohmann::json;

namespace {

struct expected_request {
    std::string sid;
    request_id rid = 0;
    std::optional<request_id> ack;
    bool terminate = false;
    std::optional<std::uint32_t> wait;
    std::optional<std::uint32_t> hold;
    std::string messages = "[]"; // the messages, as a JSON array

    // Builders: want(rid).with_sid("s").with_ack(3) ...
    expected_request with_sid(std::string v) const {
        auto e = *this;
        e.sid = std::move(v);
        return e;
    }
    expected_request with_ack(request_id v) const {
        auto e = *this;
        e.ack = v;
        return e;
    }
    expected_request terminating() const {
        auto e = *this;
        e.terminate = true;
        return e;
    }
    expected_request with_wait(std::uint32_t v) const {
        auto e = *this;
        e.wait = v;
        return e;
    }
    expected_request with_hold(std::uint32_t v) const {
        auto e = *this;
        e.hold = v;
        return e;
    }
    expected_request with_messages(std::string v) const {
        auto e = *this;
        e.messages = std::move(v);
        return e;
    }
};

expected_request want(request_id rid) {
    expected_request e;
    e.rid = rid;
    return e;
}

struct valid_case {
    std::string name;
    std::string body;
    expected_request want;
};

std::vector<valid_case> valid_cases() {
    std::vector<valid_case> v;
    v.push_back({"create, minimal", R"({"rid": 1000})", want(1000)});
    v.push_back({"create with wait and hold", R"({"rid": 1000, "wait": 30, "hold": 1})",
                 want(1000).with_wait(30).with_hold(1)});
    v.push_back({"create, polling (hold 0, wait 0)", R"({"rid": 5, "wait": 0, "hold": 0})",
                 want(5).with_wait(0).with_hold(0)});
    v.push_back({"create with first messages",
                 R"({"rid": 1, "messages": [{"subscribe": "news"}, 2, "three", null]})",
                 want(1).with_messages(R"([{"subscribe":"news"},2,"three",null])")});
    v.push_back({"request", R"({"sid": "n0-abc", "rid": 1001})", want(1001).with_sid("n0-abc")});
    v.push_back(
        {"request with messages and ack",
         R"({"sid":"n0-abc","rid":1001,"messages":[{"publish":"news","data":1}],"ack":1000})",
         want(1001).with_sid("n0-abc").with_ack(1000).with_messages(
             R"([{"data":1,"publish":"news"}])")});
    v.push_back({"ack of 0", R"({"sid":"s","rid":1,"ack":0})", want(1).with_sid("s").with_ack(0)});
    v.push_back({"terminate", R"({"sid": "n0-abc", "rid": 1002, "type": "terminate"})",
                 want(1002).with_sid("n0-abc").terminating()});
    v.push_back({"terminate with messages",
                 R"({"sid":"x","rid":3,"type":"terminate","messages":[{"bye":true}]})",
                 want(3).with_sid("x").terminating().with_messages(R"([{"bye":true}])")});
    v.push_back({"rid 0", R"({"rid": 0})", want(0)});
    v.push_back({"rid 2^53-1", R"({"rid": 9007199254740991})", want(9007199254740991ull)});
    // JSON numbers have no integer type: an integral value written as a float is that integer.
    v.push_back({"rid written 1000.0", R"({"rid": 1000.0})", want(1000)});
    v.push_back({"rid written 1e3", R"({"rid": 1e3})", want(1000)});
    v.push_back({"hold at uint32 max", R"({"rid": 1, "hold": 4294967295})",
                 want(1).with_hold(4294967295u)});
    v.push_back({"null fields count as absent",
                 R"({"rid": 9, "ack": null, "type": null, "messages": null, "wait": null})",
                 want(9)});
    v.push_back({"unknown fields are ignored", R"({"rid": 4, "extra": {"x": [1]}})", want(4)});
    v.push_back({"whitespace around", " \r\n\t{\"rid\":4}\n ", want(4)});
    v.push_back({"brackets inside strings do not count as nesting",
                 R"({"rid":1,"messages":[")" + std::string(1000, '[') + R"("]})",
                 want(1).with_messages(R"([")" + std::string(1000, '[') + R"("])")});
    // The depth limit: the object is depth 1, "messages" depth 2.
    v.push_back({"nesting at the depth limit (64)",
                 R"({"rid":1,"messages":)" + std::string(63, '[') + std::string(63, ']') + "}",
                 want(1).with_messages(std::string(63, '[') + std::string(63, ']'))});
    v.push_back({"escaped quote inside a string", R"({"rid":2,"messages":["a\"[[[","{{"]})",
                 want(2).with_messages(R"(["a\"[[[","{{"])")});
    return v;
}

std::vector<std::pair<std::string, std::string>> malformed_cases() {
    std::vector<std::pair<std::string, std::string>> v = {
        {"empty body", ""},
        {"not JSON", "hello"},
        {"truncated object", R"({"rid": 1)"},
        {"trailing comma", R"({"rid": 1,})"},
        {"trailing garbage", R"({"rid": 1} x)"},
        {"two objects", R"({"rid": 1}{"rid": 2})"},
        {"single quotes", "{'rid': 1}"},
        {"not an object: array", R"([{"rid": 1}])"},
        {"not an object: number", "1000"},
        {"not an object: string", R"("rid")"},
        {"not an object: null", "null"},
        {"not an object: true", "true"},
        {"rid missing", R"({"sid": "n0-abc"})"},
        {"rid missing, empty object", "{}"},
        {"rid null", R"({"rid": null})"},
        {"rid negative", R"({"rid": -1})"},
        {"rid negative float", R"({"rid": -1.0})"},
        {"rid fractional", R"({"rid": 1000.5})"},
        {"rid string", R"({"rid": "1000"})"},
        {"rid boolean", R"({"rid": true})"},
        {"rid array", R"({"rid": [1]})"},
        {"rid object", R"({"rid": {"n": 1}})"},
        {"rid 2^53", R"({"rid": 9007199254740992})"},
        {"rid 2^64-1", R"({"rid": 18446744073709551615})"},
        {"rid 2^64", R"({"rid": 18446744073709551616})"},
        {"rid 1e300", R"({"rid": 1e300})"},
        {"sid number", R"({"sid": 42, "rid": 1})"},
        {"sid empty", R"({"sid": "", "rid": 1})"},
        {"sid array", R"({"sid": ["n0-abc"], "rid": 1})"},
        {"sid boolean", R"({"sid": true, "rid": 1})"},
        {"messages object", R"({"rid": 1, "messages": {"a": 1}})"},
        {"messages string", R"({"rid": 1, "messages": "hi"})"},
        {"messages number", R"({"rid": 1, "messages": 3})"},
        {"type unknown", R"({"sid": "s", "rid": 1, "type": "pause"})"},
        {"type empty", R"({"sid": "s", "rid": 1, "type": ""})"},
        {"type number", R"({"sid": "s", "rid": 1, "type": 1})"},
        {"type in another case", R"({"sid": "s", "rid": 1, "type": "Terminate"})"},
        {"ack negative", R"({"sid": "s", "rid": 1, "ack": -1})"},
        {"ack string", R"({"sid": "s", "rid": 1, "ack": "0"})"},
        {"ack over 2^53-1", R"({"sid": "s", "rid": 1, "ack": 9007199254740992})"},
        {"wait string", R"({"rid": 1, "wait": "30"})"},
        {"wait negative", R"({"rid": 1, "wait": -30})"},
        {"wait fractional", R"({"rid": 1, "wait": 0.5})"},
        {"hold over uint32", R"({"rid": 1, "hold": 4294967296})"},
        {"invalid UTF-8", "{\"rid\":1,\"messages\":[\"\xff\xfe\"]}"},
        {"NUL byte in the body", std::string("{\"rid\":1}\0", 10)},
        {"nesting one past the limit (65)",
         R"({"rid":1,"messages":)" + std::string(64, '[') + std::string(64, ']') + "}"},
    };
    return v;
}

} // namespace

TEST_CASE("json codec: decode_json_request accepts valid requests") {
    const auto c = GENERATE(from_range(valid_cases()));
    DYNAMIC_SECTION(c.name) {
        INFO(c.body);
        auto decoded = decode_json_request(c.body);
        auto* req = std::get_if<client_request>(&decoded);
        REQUIRE(req != nullptr);
        CHECK(req->sid == c.want.sid);
        CHECK(req->rid == c.want.rid);
        CHECK(req->ack == c.want.ack);
        CHECK(req->terminate == c.want.terminate);
        CHECK(req->wait == c.want.wait);
        CHECK(req->hold == c.want.hold);
        json messages = json::array();
        for (const auto& m : req->messages) {
            CHECK(m.is_json());
            messages.push_back(m.json());
        }
        CHECK(messages == json::parse(c.want.messages));
    }
}

TEST_CASE("json codec: the upgrade's stream_ack and streaming") {
    auto decoded = decode_json_request(R"({"sid":"s","rid":7,"stream_ack":12,"streaming":true})");
    auto* req = std::get_if<client_request>(&decoded);
    REQUIRE(req != nullptr);
    CHECK(req->stream_ack == 12u);
    CHECK(req->streaming);
    decoded = decode_json_request(R"({"sid":"s","rid":7})");
    req = std::get_if<client_request>(&decoded);
    REQUIRE(req != nullptr);
    CHECK_FALSE(req->stream_ack);
    CHECK_FALSE(req->streaming);
    for (const char* bad : {R"({"rid":7,"streaming":1})", R"({"rid":7,"stream_ack":"1"})",
                            R"({"rid":7,"stream_ack":-1})"}) {
        INFO(bad);
        CHECK(std::holds_alternative<protocol_error>(decode_json_request(bad)));
    }
}

TEST_CASE("json codec: decode_json_request refuses malformed requests with bad_request") {
    const auto c = GENERATE(from_range(malformed_cases()));
    DYNAMIC_SECTION(c.first) {
        INFO(c.second.substr(0, 80));
        auto decoded = decode_json_request(c.second);
        auto* e = std::get_if<protocol_error>(&decoded);
        REQUIRE(e != nullptr);
        CHECK(*e == protocol_error::bad_request);
    }
}

namespace {

/// The decoded request as text, to compare two decoders' results.
std::string describe(const std::variant<client_request, protocol_error>& decoded) {
    if (const auto* e = std::get_if<protocol_error>(&decoded))
        return "error " + std::to_string(static_cast<int>(*e));
    const auto& r = std::get<client_request>(decoded);
    json messages = json::array();
    for (const auto& m : r.messages)
        messages.push_back(m.json());
    return "sid=" + r.sid + " rid=" + std::to_string(r.rid) +
           " ack=" + (r.ack ? std::to_string(*r.ack) : "-") +
           " terminate=" + std::to_string(r.terminate) +
           " wait=" + (r.wait ? std::to_string(*r.wait) : "-") +
           " hold=" + (r.hold ? std::to_string(*r.hold) : "-") +
           " stream_ack=" + (r.stream_ack ? std::to_string(*r.stream_ack) : "-") +
           " streaming=" + std::to_string(r.streaming) + " messages=" + messages.dump();
}

} // namespace

TEST_CASE("json codec: the fast path decodes exactly as the general decoder") {
    // Bodies of the shapes the fast path takes, near misses of them, and every case above;
    // then every single-byte deletion and a set of single-byte substitutions of each.
    std::vector<std::string> seeds = {
        R"({"sid":"n0-0abcdefghijklmnopqrstu","rid":1001})",
        R"({"rid":1001,"sid":"n0-0abc","ack":1000,"messages":[]})",
        R"({ "sid" : "s" , "rid" : 0 , "type" : "terminate" })",
        R"({"rid":5,"wait":0,"hold":0})",
        R"({"rid":5,"wait":4294967295,"hold":4294967296})",
        R"({"rid":999999999999999,"ack":9999999999999999})",
        R"({"rid":1,"rid":2})",
        R"({"sid":"a","sid":"b","rid":1})",
        R"({"rid":01})",
        R"({"rid":1.5e1})",
        R"({"rid":-0})",
        R"({"rid":1,"messages":[ ]})",
        R"({"rid":1,"messages":[1]})",
        R"({"rid":1,"sid":"\u0041"})",
        R"({"rid":1,"sid":"caf\u00e9"})",
        "{\"rid\":1,\"sid\":\"caf\xc3\xa9\"}",
        "{\"rid\":1,\"sid\":\"\x7f\"}",
        "\xef\xbb\xbf{\"rid\":1}",
        R"({"rid":1,"type":"terminate","type":"terminate"})",
        R"({"rid":1,"extra":2})",
        R"({"sid":"s","rid":7,"ack":6,"stream_ack":12})",
        R"({"sid":"s","rid":7,"streaming":true,"ack":6})",
        R"({"sid":"s","rid":7,"streaming":false})",
        R"({"rid":7,"streaming":1})",
        R"({"rid":7,"streaming":"true"})",
        R"({"rid":7,"streaming":tru})",
        R"({"rid":7,"streaming":truex})",
        R"({"rid":7,"stream_ack":-1})",
        R"({"rid":7,"stream_ack":9007199254740992})",
        R"({"rid":1,"sid":null})",
        R"({"rid":1}  )",
        R"({"rid":1})" + std::string(1, '\0'),
        R"({"rid":1,})",
        R"({,"rid":1})",
        R"({"rid":1 "sid":"s"})",
        "{}",
        "",
    };
    for (const auto& c : valid_cases())
        seeds.push_back(c.body);
    for (const auto& c : malformed_cases())
        seeds.push_back(c.second);

    std::vector<std::string> bodies;
    for (const auto& seed : seeds) {
        bodies.push_back(seed);
        if (seed.size() > 200)
            continue;
        for (std::size_t i = 0; i < seed.size(); ++i) {
            bodies.push_back(seed.substr(0, i) + seed.substr(i + 1));
            for (char c : std::string_view("0 9\"\\{}[],:.e-nt\x80\x01")) {
                std::string b = seed;
                b[i] = c;
                bodies.push_back(std::move(b));
            }
        }
    }
    std::size_t mismatches = 0;
    for (const auto& body : bodies) {
        const auto fast = describe(decode_json_request(body));
        const auto general = describe(megaphone::decode_json_request_general(body));
        if (fast != general) {
            ++mismatches;
            INFO(body);
            CHECK(fast == general);
        }
    }
    CHECK(mismatches == 0);
}

TEST_CASE("json codec: deep nesting is refused fast, without recursion") {
    const std::string deep_array(100000, '[');
    std::string deep_object;
    for (int i = 0; i < 100000; ++i)
        deep_object += "{\"a\":";
    const std::vector<std::pair<std::string, std::string>> bodies = {
        {"100000 '['", deep_array},
        {"100000 '[' then 100000 ']'", deep_array + std::string(100000, ']')},
        {"100000 nested objects", deep_object},
        {"100000 '[' inside messages",
         R"({"rid":1,"messages":)" + deep_array + std::string(100000, ']') + "}"},
    };
    for (const auto& [name, body] : bodies) {
        INFO(name);
        const auto t0 = std::chrono::steady_clock::now();
        auto decoded = decode_json_request(body);
        const auto elapsed = std::chrono::steady_clock::now() - t0;
        auto* e = std::get_if<protocol_error>(&decoded);
        REQUIRE(e != nullptr);
        CHECK(*e == protocol_error::bad_request);
        CHECK(elapsed < std::chrono::milliseconds(100));
    }
}

TEST_CASE("json codec: protocol errors map to one condition and one HTTP status") {
    using megaphone::condition;
    using megaphone::http_status;
    CHECK(condition(protocol_error::item_not_found) == "item-not-found");
    CHECK(http_status(protocol_error::item_not_found) == 404);
    CHECK(condition(protocol_error::bad_request) == "bad-request");
    CHECK(http_status(protocol_error::bad_request) == 400);
    CHECK(condition(protocol_error::too_large) == "policy-violation");
    CHECK(http_status(protocol_error::too_large) == 413);
    CHECK(condition(protocol_error::policy_violation) == "policy-violation");
    CHECK(http_status(protocol_error::policy_violation) == 403);
    CHECK(condition(protocol_error::system_shutdown) == "system-shutdown");
    CHECK(http_status(protocol_error::system_shutdown) == 503);

    // Ends that the client asked for, or that are silent, carry no condition.
    CHECK(condition(close_reason::client_terminate).empty());
    CHECK(condition(close_reason::server_terminate).empty());
    CHECK(condition(close_reason::inactivity).empty());
    CHECK(condition(close_reason::queue_overflow) == "policy-violation");
    CHECK(condition(close_reason::policy_violation) == "policy-violation");
    CHECK(condition(close_reason::item_not_found) == "item-not-found");
    CHECK(condition(close_reason::bad_request) == "bad-request");
    CHECK(condition(close_reason::system_shutdown) == "system-shutdown");
}

TEST_CASE("json codec: encoders write these exact bytes") {
    const json_codec& codec = json_codec::instance();
    using std::chrono::milliseconds;
    CHECK(codec.kind() == megaphone::content_kind::json);

    const std::vector<packet> none;
    const std::vector<packet> two = {packet::from(R"({"channel":"news","data":1})"),
                                     packet::from("2")};

    SECTION("created") {
        const session_info info{"n0-V1StGXR8_Z5jdHi6B-myT", milliseconds(30000), 1, 2,
                                milliseconds(45000),        milliseconds(2000)};
        CHECK(codec.created(info, 1000, none).view() ==
              R"({"hold":1,"inactivity":45,"polling":2,"requests":2,"rid":1000,)"
              R"("sid":"n0-V1StGXR8_Z5jdHi6B-myT","wait":30,"messages":[]})");
        CHECK(codec.created(info, 1000, two).view() ==
              R"({"hold":1,"inactivity":45,"polling":2,"requests":2,"rid":1000,)"
              R"("sid":"n0-V1StGXR8_Z5jdHi6B-myT","wait":30,)"
              R"("messages":[{"channel":"news","data":1},2]})");
        // Durations that are not whole seconds are written as fractions.
        const session_info fractional{"n0-x", milliseconds(1500), 0,
                                      1,      milliseconds(250),  milliseconds(2000)};
        CHECK(codec.created(fractional, 7, none).view() ==
              R"({"hold":0,"inactivity":0.25,"polling":2,"requests":1,"rid":7,"sid":"n0-x",)"
              R"("wait":1.5,"messages":[]})");
        const json parsed = json::parse(codec.created(info, 9007199254740991ull, two).view());
        CHECK(parsed.at("rid") == 9007199254740991ull);
    }
    SECTION("data") {
        CHECK(codec.data(1001, none).view() == R"({"rid":1001,"messages":[]})");
        CHECK(codec.data(1001, two).view() ==
              R"({"rid":1001,"messages":[{"channel":"news","data":1},2]})");
        CHECK(codec.data(0, none).view() == R"({"rid":0,"messages":[]})");
        // The largest rid: the answer is written in place into room computed beforehand.
        CHECK(codec.data(18446744073709551615ull, none).view() ==
              R"({"rid":18446744073709551615,"messages":[]})");
        CHECK(codec.data(18446744073709551615ull, two).view() ==
              R"({"rid":18446744073709551615,"messages":[{"channel":"news","data":1},2]})");
    }
    SECTION("closing") {
        CHECK(codec.closing(5, close_reason::client_terminate).view() ==
              R"({"rid":5,"type":"terminate"})");
        CHECK(codec.closing(5, close_reason::server_terminate).view() ==
              R"({"rid":5,"type":"terminate"})");
        CHECK(codec.closing(5, close_reason::inactivity).view() ==
              R"({"rid":5,"type":"terminate"})");
        CHECK(codec.closing(5, close_reason::queue_overflow).view() ==
              R"({"rid":5,"type":"terminate","condition":"policy-violation"})");
        CHECK(codec.closing(5, close_reason::policy_violation).view() ==
              R"({"rid":5,"type":"terminate","condition":"policy-violation"})");
        CHECK(codec.closing(5, close_reason::item_not_found).view() ==
              R"({"rid":5,"type":"terminate","condition":"item-not-found"})");
        CHECK(codec.closing(5, close_reason::bad_request).view() ==
              R"({"rid":5,"type":"terminate","condition":"bad-request"})");
        CHECK(codec.closing(5, close_reason::system_shutdown).view() ==
              R"({"rid":5,"type":"terminate","condition":"system-shutdown"})");
    }
    SECTION("terminated, replaced") {
        CHECK(codec.terminated(1002).view() == R"({"rid":1002,"type":"terminate"})");
        CHECK(codec.replaced(81).view() == R"({"rid":81,"type":"error","condition":"replaced"})");
    }
    SECTION("errors") {
        CHECK(codec.error(protocol_error::item_not_found).view() ==
              R"({"type":"terminate","condition":"item-not-found"})");
        CHECK(codec.error(protocol_error::bad_request).view() ==
              R"({"type":"terminate","condition":"bad-request"})");
        CHECK(codec.error(protocol_error::too_large).view() ==
              R"({"type":"terminate","condition":"policy-violation"})");
        CHECK(codec.error(protocol_error::policy_violation).view() ==
              R"({"type":"terminate","condition":"policy-violation"})");
        CHECK(codec.error(protocol_error::system_shutdown).view() ==
              R"({"type":"terminate","condition":"system-shutdown"})");
    }
    SECTION("encode") {
        CHECK(codec.encode(json{{"channel", "news"}, {"data", {1, 2}}}).view() ==
              R"({"channel":"news","data":[1,2]})");
        CHECK(codec.encode(json("text \"quoted\"\n")).view() == R"("text \"quoted\"\n")");
        CHECK(codec.encode(json(nullptr)).view() == "null");
        CHECK(codec.encode(json("héllo")).view() == "\"héllo\"");
    }
    SECTION("every answer is valid JSON") {
        for (const packet& p :
             {codec.data(3, two), codec.closing(3, close_reason::bad_request), codec.terminated(3),
              codec.replaced(3), codec.error(protocol_error::bad_request)}) {
            INFO(p.view());
            CHECK_NOTHROW(json::parse(p.view()));
        }
    }
}

TEST_CASE("json codec: a decoded message keeps its value and text() serializes it") {
    auto decoded = decode_json_request(R"({"rid":1,"messages":[{"b":2,"a":[1,"x"]},"s",3.5]})");
    auto* req = std::get_if<client_request>(&decoded);
    REQUIRE(req != nullptr);
    REQUIRE(req->messages.size() == 3);
    CHECK(req->messages[0].text() == R"({"a":[1,"x"],"b":2})");
    CHECK(req->messages[1].text() == R"("s")");
    CHECK(req->messages[2].text() == "3.5");
    CHECK(req->messages[0].json().is_object()); // not wrapped in an array
}
