// libFuzzer target: the JSON transport's request decoder, and the encoders fed with what decodes.
// Whatever decode_json_request() accepts must re-encode (data, created) into JSON that parses
// back with the same messages.
#include "transport/json_codec.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <variant>
#include <vector>

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_json_codec: %s\n", what);
    std::abort();
}

void check_answer(const megaphone::packet& p, const std::vector<megaphone::packet>& packets) {
    const nlohmann::json doc = nlohmann::json::parse(p.view(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        fail("an answer is not a JSON object");
    if (!doc.contains("messages") || !doc["messages"].is_array() ||
        doc["messages"].size() != packets.size())
        fail("an answer lost messages");
    for (std::size_t i = 0; i < packets.size(); ++i) {
        // Compare as re-parsed values: floats survive dump/parse exactly (round-trip format).
        const auto back = nlohmann::json::parse(packets[i].view(), nullptr, false);
        if (back.is_discarded() || doc["messages"][i] != back)
            fail("a message did not survive encoding");
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body{reinterpret_cast<const char*>(data), size};
    auto decoded = megaphone::decode_json_request(body);
    // The fast path for common shapes must agree with the general decoder on every input.
    {
        const auto general = megaphone::decode_json_request_general(body);
        if (decoded.index() != general.index())
            fail("the fast path and the general decoder disagree (accept/refuse)");
        if (const auto* a = std::get_if<megaphone::client_request>(&decoded)) {
            const auto& b = std::get<megaphone::client_request>(general);
            if (a->sid != b.sid || a->rid != b.rid || a->ack != b.ack ||
                a->terminate != b.terminate || a->wait != b.wait || a->hold != b.hold ||
                a->messages.size() != b.messages.size())
                fail("the fast path and the general decoder disagree (fields)");
            for (std::size_t i = 0; i < a->messages.size(); ++i)
                if (a->messages[i].json() != b.messages[i].json())
                    fail("the fast path and the general decoder disagree (messages)");
        }
    }
    if (auto* e = std::get_if<megaphone::protocol_error>(&decoded)) {
        if (*e != megaphone::protocol_error::bad_request)
            fail("a decoding error other than bad_request");
        return 0;
    }
    const auto& req = std::get<megaphone::client_request>(decoded);
    const auto& codec = megaphone::json_codec::instance();

    std::vector<megaphone::packet> packets;
    packets.reserve(req.messages.size());
    for (const auto& m : req.messages) {
        if (!m.is_json())
            fail("a JSON request decoded an XML message");
        packets.push_back(codec.encode(m.json()));
    }

    check_answer(codec.data(req.rid, packets), packets);

    const std::string sid = req.sid.empty() ? std::string("fuzz-sid") : req.sid;
    const megaphone::session_info info{
        sid,
        std::chrono::seconds(req.wait.value_or(30)),
        req.hold.value_or(1),
        2,
        std::chrono::seconds(45),
        std::chrono::milliseconds(2500),
    };
    const auto created = codec.created(info, req.rid, packets);
    check_answer(created, packets);
    const auto doc = nlohmann::json::parse(created.view());
    if (!doc.contains("sid") || doc["sid"] != sid)
        fail("the creation answer lost the sid");

    // The other answers must be JSON too.
    for (const auto& p : {codec.terminated(req.rid), codec.replaced(req.rid),
                          codec.closing(req.rid, megaphone::close_reason::policy_violation),
                          codec.error(megaphone::protocol_error::bad_request)})
        if (nlohmann::json::parse(p.view(), nullptr, false).is_discarded())
            fail("an answer is not JSON");
    return 0;
}
