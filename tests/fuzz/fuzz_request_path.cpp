// libFuzzer target: the request path from raw HTTP bytes to the response, without sockets.
// Beast parses the bytes as one HTTP request (body limit 64 KiB, as the server). The body then
// goes through the transport its target names (/bosh: BOSH, else JSON; anything else is tried
// as both) and, when it decodes, into a megaphone::testing::harness engine running a hub-like
// echo app: the decoded request creates a session, or its messages are sent in one. A target
// under /publish/ goes through the hub's publish route instead (channel name, envelope).
#include "app/hub.hpp"
#include "app/session.hpp"
#include "app/testing.hpp"
#include "transport/bosh_codec.hpp"
#include "transport/json_codec.hpp"
#include "transport/static_files.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace http = boost::beast::http;
using megaphone::testing::harness;

namespace {

// {"subscribe": ch}, {"unsubscribe": ch}, {"publish": ch, "data": X} as the hub does; anything
// else (and every XML stanza) is echoed back to the sender.
class echo_hub final : public megaphone::application {
public:
    void on_open(megaphone::session& s) override {
        if (s.kind() == megaphone::content_kind::xml)
            s.push(megaphone::packet::from(
                "<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>"));
        else
            s.push(nlohmann::json{{"hello", s.id()}});
    }
    void on_message(megaphone::session& s, const megaphone::message& m) override {
        if (!m.is_json()) {
            s.push(megaphone::packet::from(m.text()));
            return;
        }
        const auto& v = m.json();
        if (v.is_object() && v.size() >= 1) {
            auto str = [&v](const char* k) -> const std::string* {
                auto it = v.find(k);
                return it != v.end() && it->is_string() ? it->get_ptr<const std::string*>()
                                                        : nullptr;
            };
            if (auto* ch = str("subscribe"))
                return s.subscribe(*ch);
            if (auto* ch = str("unsubscribe"))
                return s.unsubscribe(*ch);
            if (auto* ch = str("publish")) {
                const auto it = v.find("data");
                s.broker().publish(
                    *ch, nlohmann::json{{"channel", *ch}, {"data", it == v.end() ? nullptr : *it}});
                return;
            }
            if (auto* ch = str("close"))
                return s.close();
        }
        s.push(v);
    }
    void on_stream_restart(megaphone::session& s) override {
        s.push(megaphone::packet::from("<restarted xmlns='urn:test'/>"));
    }
};

void run_json(const std::string& body) {
    auto decoded = megaphone::decode_json_request(body);
    auto* req = std::get_if<megaphone::client_request>(&decoded);
    if (!req) {
        (void)megaphone::json_codec::instance().error_response(
            std::get<megaphone::protocol_error>(decoded));
        return;
    }
    std::vector<nlohmann::json> messages;
    for (const auto& m : req->messages)
        messages.push_back(m.json());

    echo_hub app;
    harness h{app};
    auto& watcher = h.connect();
    watcher.send({{{"subscribe", "news"}}});
    auto& held = watcher.poll();

    if (req->sid.empty()) {
        // A creation: its wait/hold (clamped by the engine) and its messages.
        nlohmann::json options = nlohmann::json::object();
        if (req->wait)
            options["wait"] = *req->wait;
        if (req->hold)
            options["hold"] = *req->hold;
        try {
            auto& c = h.connect(options, messages);
            (void)c.received();
            c.poll();
            h.advance(std::chrono::seconds(61));
            c.terminate();
        } catch (const std::runtime_error&) {
            // creation refused: fine
        }
    } else {
        auto& c = h.connect();
        c.send({{{"subscribe", "news"}}});
        auto& r = req->terminate ? c.terminate() : c.send(messages);
        c.resend(r); // the same rid again
        c.poll();
        (void)c.take();
        h.advance(std::chrono::seconds(61));
        (void)c.received();
    }
    held.drop();
    (void)watcher.received();
    h.advance(std::chrono::minutes(5)); // everything times out
}

void run_bosh(const std::string& body) {
    auto decoded = megaphone::decode_bosh_request(body);
    auto* req = std::get_if<megaphone::bosh_request>(&decoded);
    if (!req) {
        (void)megaphone::bosh_codec::instance().error_response(
            std::get<megaphone::protocol_error>(decoded), true);
        return;
    }
    echo_hub app;
    harness h{app};
    if (req->creation()) {
        // The whole body as a creation: every attribute reaches the engine.
        try {
            auto& c = h.connect_bosh(body);
            if (!c.sid().empty() && !c.closed()) {
                c.send_xml({"<message xmlns='jabber:client'><body>hi</body></message>"});
                c.restart();
                c.poll();
                h.advance(std::chrono::seconds(61));
                (void)c.stanzas();
                c.terminate();
            }
        } catch (const std::runtime_error&) {
            // creation refused: fine
        }
    } else {
        auto& c = h.connect_bosh();
        // The payloads are standalone, so a body the harness builds around them must decode
        // (send_xml throws std::invalid_argument otherwise: let that crash the target).
        c.send_xml(req->payloads);
        if (req->pause)
            c.send_xml({}, "pause='" + std::to_string(*req->pause) + "'");
        if (req->restart)
            c.restart();
        c.poll();
        h.advance(std::chrono::seconds(61));
        (void)c.stanzas();
        if (req->terminate())
            c.terminate();
    }
    h.advance(std::chrono::minutes(5));
}

/// The hub's publish route, POST /publish/{channel}: the channel from the target, the envelope
/// from the body.
void run_publish(std::string_view rest, const std::string& body) {
    const auto channel = megaphone::percent_decode(rest);
    if (!channel || !megaphone::hub::valid_channel(*channel))
        return;
    (void)megaphone::hub::publish_packet(*channel, body);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(8 * 1024);
    parser.body_limit(64 * 1024);
    parser.eager(true);
    boost::beast::error_code ec;
    std::size_t used = 0;
    while (used < size && !parser.is_done()) {
        const std::size_t n = parser.put(boost::asio::const_buffer(data + used, size - used), ec);
        if (ec == http::error::need_more)
            break;
        if (ec)
            return 0;
        if (n == 0)
            break;
        used += n;
    }
    if (!parser.is_done()) {
        // The peer closed the connection: a body without length ends here.
        parser.put_eof(ec);
        if (ec || !parser.is_done())
            return 0;
    }
    auto msg = parser.release();
    const std::string target{msg.target()};
    const std::string& body = msg.body();
    if (msg.method() != http::verb::post)
        return 0;
    if (target.starts_with("/publish/"))
        run_publish(std::string_view(target).substr(9), body);
    else if (target.starts_with("/bosh") || target.starts_with("/http-bind"))
        run_bosh(body);
    else if (target.starts_with("/comet"))
        run_json(body);
    else {
        run_json(body);
        run_bosh(body);
    }
    return 0;
}
