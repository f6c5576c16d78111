// A session's publish rate (session::take_publish_token, session_rules::publish_rate and
// publish_burst; the hub refuses a publish beyond it with {"error": "rate-limited"}), on the
// testing kit's manual clock: the burst, then the refill.
#include "app/access.hpp"
#include "app/session.hpp"
#include "app/testing.hpp"

#include <catch2/catch.hpp>

using megaphone::testing::harness;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// Answers each {"publish": ...} with {"allowed": true|false} from the session's bucket.
class bucket_app final : public megaphone::application {
public:
    void on_message(megaphone::session& s, const megaphone::message& m) override {
        if (m.json().contains("publish"))
            s.push(json{{"allowed", s.take_publish_token()}});
    }
};

std::vector<bool> allowed(const json& messages) {
    std::vector<bool> out;
    for (const json& m : messages)
        out.push_back(m.at("allowed").get<bool>());
    return out;
}

} // namespace

TEST_CASE("publish rate: a session may publish its burst at once, then at the rate, each "
          "session has its own bucket") {
    auto rules = std::make_shared<megaphone::session_rules>();
    rules->publish_rate = 2; // per second
    rules->publish_burst = 3;
    megaphone::engine_config config;
    config.rules = rules;
    bucket_app app;
    harness h{app, config};
    auto& a = h.connect({});
    const std::vector<json> four(4, json{{"publish", "x"}});
    CHECK(allowed(a.send(four).messages()) == std::vector<bool>{true, true, true, false});
    // Half a second: one more.
    h.advance(500ms);
    CHECK(allowed(a.send({{{"publish", "x"}}, {{"publish", "x"}}}).messages()) ==
          std::vector<bool>{true, false});
    // Another session is not affected.
    auto& b = h.connect({});
    CHECK(allowed(b.send(four).messages()) == std::vector<bool>{true, true, true, false});
    // A long pause refills up to the burst, not beyond.
    h.advance(10s); // (within the inactivity timeout)
    CHECK(allowed(a.send(four).messages()) == std::vector<bool>{true, true, true, false});
}

TEST_CASE("publish rate: burst 0 is no limit") {
    auto rules = std::make_shared<megaphone::session_rules>();
    rules->publish_burst = 0;
    megaphone::engine_config config;
    config.rules = rules;
    bucket_app app;
    harness h{app, config};
    auto& a = h.connect({});
    const std::vector<json> many(1000, json{{"publish", "x"}});
    const auto got = allowed(a.send(many).messages());
    CHECK(got == std::vector<bool>(1000, true));
}
