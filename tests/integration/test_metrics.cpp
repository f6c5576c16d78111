// GET /metrics after known traffic: JSON and BOSH sessions, a push, a rid out of the window, a
// body over the limit, a session that times out. The exposition is parsed by the reference
// parser (prometheus_client.parser from Debian's python3-prometheus-client, run by
// tests/integration/parse_metrics.py) and the values it read are checked against the traffic.
#include "support/bosh_client.hpp"
#include "support/http_client.hpp"
#include "support/prometheus_parse.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

using namespace std::chrono_literals;
using megaphone::close_reason;
using megaphone::test::bosh_connection;
using megaphone::test::create_session;
using megaphone::test::http_client;
using megaphone::test::recording_app;
using megaphone::test::request_body;
using megaphone::test::test_options;
using json = nlohmann::json;
namespace http = boost::beast::http;
using megaphone::test::parse_with_prometheus_client;
using megaphone::test::parsed_metrics;

namespace {

/// A do-nothing application for the BOSH mount.
class quiet_app final : public megaphone::application {};

std::string bosh_creation(std::uint64_t rid) {
    return "<body rid='" + std::to_string(rid) +
           "' xmlns='http://jabber.org/protocol/httpbind' to='localhost' wait='60' hold='1' "
           "ver='1.6'/>";
}

std::string transition(const char* from, const char* event, const char* to) {
    return std::string("megaphone_transitions_total{event=\"") + event + "\",from=\"" + from +
           "\",to=\"" + to + "\"}";
}

} // namespace

TEST_CASE("metrics: GET /metrics counts the traffic, parsed by prometheus_client") {
    auto options = test_options();
    options.engine.inactivity = 1s; // session B times out
    options.http.max_body = 1024;
    megaphone::server srv{options};
    recording_app comet{srv};
    quiet_app bosh_app;
    srv.mount("/comet", comet);
    srv.mount_bosh("/bosh", bosh_app);
    srv.start();
    struct stopper {
        megaphone::server& s;
        ~stopper() {
            s.stop();
            s.wait();
        }
    } stop_at_end{srv};

    // C: a BOSH session, created and terminated by its client.
    {
        bosh_connection c{srv.port()};
        const auto created = c.post(bosh_creation(5000));
        REQUIRE(created.status == 200);
        const auto sid = created.attr("sid");
        REQUIRE(sid);
        const auto bye = c.post("<body rid='5001' sid='" + *sid +
                                "' type='terminate' xmlns='http://jabber.org/protocol/httpbind'/>");
        REQUIRE(bye.status == 200);
        REQUIRE(bye.attr("type") == "terminate");
    }

    // A: a JSON session on one connection: created, a poll held then answered by a push, then a
    // rid far beyond the window (item-not-found ends it).
    http_client a{srv.port()};
    const auto sa = create_session(a, 100);
    // The poll carries a message: once the application has seen it, the poll is held (the
    // same step on the session's thread).
    a.send_json("/comet", request_body(sa.sid, 101, json::array({{{"subscribe", "news"}}})));
    REQUIRE(comet.wait_messages(sa.sid, 1));
    srv.push(sa.sid, json{{"hello", "world"}});
    const auto pushed = a.receive();
    REQUIRE(pushed.status == 200);
    REQUIRE(pushed.json().at("messages").size() == 1);
    const auto far = a.post_json("/comet", request_body(sa.sid, 150));
    REQUIRE(far.status == 404);
    REQUIRE(comet.wait_closed(sa.sid) == close_reason::item_not_found);

    // A body over --max-body on /comet: 413.
    {
        http_client big{srv.port()};
        const auto r = big.post("/comet", std::string(4096, ' '));
        REQUIRE(r.status == 413);
    }

    // B: a JSON session that nobody polls: closed for inactivity after 1 s.
    http_client b{srv.port()};
    const auto sb = create_session(b, 200);
    REQUIRE(comet.wait_closed(sb.sid, 5s) == close_reason::inactivity);

    http_client scraper{srv.port()};
    const auto r = scraper.get("/metrics");
    REQUIRE(r.status == 200);
    CHECK(r.headers[boost::beast::http::field::content_type] ==
          "text/plain; version=0.0.4; charset=utf-8");
    INFO(r.body);
    const parsed_metrics m = parse_with_prometheus_client(r.body);

    // Every family has HELP and TYPE; counters, gauges and the histogram are typed as such.
    CHECK(m.types.at("megaphone_sessions") == "gauge");
    CHECK(m.types.at("megaphone_held_connections") == "gauge");
    for (const char* c : {"megaphone_transitions", "megaphone_sessions_created",
                          "megaphone_sessions_closed", "megaphone_requests", "megaphone_responses",
                          "megaphone_messages", "megaphone_bytes", "megaphone_refusals"})
        CHECK(m.types.at(c) == "counter");
    CHECK(m.types.at("megaphone_push_latency_seconds") == "histogram");
    for (const auto& [name, help] : m.help)
        CHECK_FALSE(help.empty());

    // Sessions: created by transport, closed by reason, none left in any state.
    CHECK(m.at("megaphone_sessions_created_total{transport=\"json\"}") == 2);
    CHECK(m.at("megaphone_sessions_created_total{transport=\"bosh\"}") == 1);
    CHECK(m.at("megaphone_sessions_closed_total{reason=\"client_terminate\"}") == 1);
    CHECK(m.at("megaphone_sessions_closed_total{reason=\"item_not_found\"}") == 1);
    CHECK(m.at("megaphone_sessions_closed_total{reason=\"inactivity\"}") == 1);
    CHECK(m.at("megaphone_sessions_closed_total{reason=\"queue_overflow\"}") == 0);
    for (const char* state : {"waiting", "have_request", "have_packet"})
        CHECK(m.at(std::string("megaphone_sessions{state=\"") + state + "\"}") == 0);
    CHECK(m.at("megaphone_held_connections") == 0);

    // Transitions, from the machine: three creations answered at once, A's poll held and
    // answered by the push, A and C ended by terminate_session, B by its die timer.
    CHECK(m.at(transition("waiting", "request_arrived", "waiting")) == 3);
    CHECK(m.at(transition("waiting", "request_arrived", "have_request")) == 1);
    CHECK(m.at(transition("have_request", "packet_pushed", "waiting")) == 1);
    CHECK(m.at(transition("waiting", "terminate_session", "closed")) == 2);
    CHECK(m.at(transition("waiting", "die_expired", "closed")) == 1);
    CHECK(m.at(transition("waiting", "packet_pushed", "have_packet")) == 0); // in the table
    double transitions = 0;
    for (const auto& [key, value] : m.samples)
        if (key.starts_with("megaphone_transitions_total{"))
            transitions += value;
    CHECK(transitions == 8);

    // HTTP: /comet got A's three requests, B's creation and the 413; /bosh two; the scrape is
    // "other". Answers: by the answer's transport and status.
    CHECK(m.at("megaphone_requests_total{transport=\"json\"}") == 5);
    CHECK(m.at("megaphone_requests_total{transport=\"bosh\"}") == 2);
    CHECK(m.at("megaphone_requests_total{transport=\"other\"}") == 1);
    CHECK(m.at("megaphone_responses_total{code=\"200\",transport=\"json\"}") == 3);
    CHECK(m.at("megaphone_responses_total{code=\"404\",transport=\"json\"}") == 1);
    CHECK(m.at("megaphone_responses_total{code=\"413\",transport=\"json\"}") == 1);
    CHECK(m.at("megaphone_responses_total{code=\"200\",transport=\"bosh\"}") == 2);
    CHECK(m.at("megaphone_messages_total{direction=\"in\"}") == 1);
    CHECK(m.at("megaphone_messages_total{direction=\"out\"}") == 1);
    CHECK(m.at("megaphone_bytes_total{direction=\"in\"}") > 0);
    CHECK(m.at("megaphone_bytes_total{direction=\"out\"}") > 0);

    // Limits.
    CHECK(m.at("megaphone_refusals_total{limit=\"body_too_large\"}") == 1);
    CHECK(m.at("megaphone_refusals_total{limit=\"rid_out_of_window\"}") == 1);
    CHECK(m.at("megaphone_refusals_total{limit=\"too_many_sessions\"}") == 0);
    CHECK(m.at("megaphone_refusals_total{limit=\"polling_too_fast\"}") == 0);

    // Push latency: one answer carried a pushed message.
    CHECK(m.at("megaphone_push_latency_seconds_count") == 1);
    CHECK(m.at("megaphone_push_latency_seconds_bucket{le=\"+Inf\"}") == 1);
    CHECK(m.at("megaphone_push_latency_seconds_bucket{le=\"10\"}") == 1);
    CHECK(m.at("megaphone_push_latency_seconds_sum") > 0);
    CHECK(m.at("megaphone_push_latency_seconds_sum") < 5);
}

TEST_CASE("metrics: queue overflow, too many sessions and polling too fast are counted") {
    auto options = test_options();
    options.engine.max_queue = 2;
    options.engine.max_sessions = 1; // per shard
    options.engine.polling = 10s;
    options.threads = 1;
    megaphone::test::test_server f{options};

    http_client c{f.port()};
    const auto s = create_session(c, 10);
    for (int i = 0; i < 3; ++i)
        f.srv().push(s.sid, json{{"n", i}});
    REQUIRE(f.app().wait_closed(s.sid) == close_reason::queue_overflow);
    // Reaped: room for one session again. A polling session (hold 0) polls twice at once.
    const auto p = create_session(c, 20, {{"hold", 0}});
    REQUIRE(c.post_json("/comet", request_body(p.sid, 21)).status == 200);
    REQUIRE(c.post_json("/comet", request_body(p.sid, 22)).status == 403);
    REQUIRE(f.app().wait_closed(p.sid) == close_reason::policy_violation);
    // Reaped too; one session fills the shard, the next creation is refused.
    const auto q = create_session(c, 30);
    const auto refused = c.post_json("/comet", json{{"rid", 40}});
    REQUIRE(refused.status == 403);

    const auto m = parse_with_prometheus_client(c.get("/metrics").body);
    CHECK(m.at("megaphone_refusals_total{limit=\"queue_overflow\"}") == 1);
    CHECK(m.at("megaphone_refusals_total{limit=\"polling_too_fast\"}") == 1);
    CHECK(m.at("megaphone_refusals_total{limit=\"too_many_sessions\"}") == 1);
    CHECK(m.at("megaphone_sessions_closed_total{reason=\"queue_overflow\"}") == 1);
    CHECK(m.at("megaphone_sessions_closed_total{reason=\"policy_violation\"}") == 1);
    CHECK(m.at("megaphone_sessions{state=\"waiting\"}") == 1);
    CHECK(m.at(transition("waiting", "packet_pushed", "have_packet")) == 1);
    CHECK(m.at(transition("have_packet", "packet_pushed", "have_packet")) == 1);
    CHECK(m.at(transition("have_packet", "packet_pushed", "closed")) == 1);
}

TEST_CASE("admin: 404 when off, 403 without the token in the header, page, sessions and stats") {
    const auto with_token = [](std::string_view token) {
        return megaphone::test::request_header{"X-Megaphone-Token", token};
    };
    {
        megaphone::test::test_server plain;
        http_client c{plain.port()};
        CHECK(c.get("/admin").status == 404);
        CHECK(c.get("/admin?token=x").status == 404);
        CHECK(c.post("/admin/comet?token=x", R"({"rid":1})").status == 404);
    }
    auto options = test_options();
    options.admin_token = "s3cret";
    megaphone::test::test_server f{options};
    http_client c{f.port()};
    // The page holds no data: served without a token (a reload, once its script has taken the
    // token out of the address), refused with a wrong one.
    CHECK(c.get("/admin?token=s3cre").status == 403);
    for (const char* link : {"/admin?token=s3cret", "/admin", "/admin/"}) {
        INFO(link);
        const auto page = c.get(link);
        CHECK(page.status == 200);
        CHECK(page.body.find("Megaphone admin") != std::string::npos);
    }
    // The data: the token in the X-Megaphone-Token header only, never from a URL.
    CHECK(c.get("/admin/sessions").status == 403);
    CHECK(c.get("/admin/sessions?token=s3cret").status == 403);
    CHECK(c.request(http::verb::get, "/admin/sessions", {}, {with_token("wrong")}).status == 403);
    CHECK(c.post("/admin/comet", R"({"rid":1})").status == 403);
    CHECK(c.post("/admin/comet?token=s3cret", R"({"rid":1})").status == 403);
    CHECK(c.post("/admin/comet/n0", R"({"rid":1})").status == 403); // the mount's node form
    const auto svg = c.get("/admin/assets/fsm.svg");
    CHECK(svg.status == 200);
    CHECK(svg.body.find("have_request") != std::string::npos);
    CHECK(c.get("/admin/assets/admin.js").status == 200);
    CHECK(c.get("/admin/assets/megaphone.js").status == 200);
    CHECK(c.get("/admin/assets/nothing.js").status == 404);

    // Two hub sessions, then the table: both listed, with state, age and address.
    http_client other{f.port()};
    const auto s1 = create_session(other, 10);
    const auto s2 = create_session(other, 20);
    const auto rows =
        c.request(http::verb::get, "/admin/sessions?page=0&size=1", {}, {with_token("s3cret")});
    REQUIRE(rows.status == 200);
    const json table = rows.json();
    CHECK(table.at("total") == 2);
    REQUIRE(table.at("sessions").size() == 1);
    const json& row = table.at("sessions").at(0);
    CHECK((row.at("sid") == s1.sid || row.at("sid") == s2.sid));
    CHECK(row.at("state") == "waiting");
    CHECK(row.at("transport") == "json");
    CHECK(row.at("address").get<std::string>().starts_with("127.0.0.1:"));
    const json second =
        c.request(http::verb::get, "/admin/sessions?page=1&size=1", {}, {with_token("s3cret")})
            .json();
    REQUIRE(second.at("sessions").size() == 1);
    CHECK(second.at("sessions").at(0).at("sid") != row.at("sid"));

    // The console's own session gets a stats snapshot within a few periods (one second each).
    http_client admin{f.port(), 10s};
    const auto created =
        admin.request(http::verb::post, "/admin/comet", R"({"rid":100})", {with_token("s3cret")});
    REQUIRE(created.status == 200);
    const std::string sid = created.json().at("sid").get<std::string>();
    json stats;
    for (std::uint64_t rid = 101; rid < 110 && stats.is_null(); ++rid) {
        const auto r = admin.request(http::verb::post, "/admin/comet",
                                     request_body(sid, rid).dump(), {with_token("s3cret")});
        REQUIRE(r.status == 200);
        const json answer = r.json();
        for (const json& m : answer.at("messages"))
            if (m.value("type", "") == "stats" && m.at("sessions").get<int>() >= 2)
                stats = m;
    }
    REQUIRE(stats.is_object());
    CHECK(stats.at("type") == "stats");
    CHECK(stats.at("states").contains("have_request"));
    CHECK(stats.at("sessions").get<int>() >= 2);
    CHECK(stats.at("created").get<int>() >= 2);
}

TEST_CASE("metrics: refusals before the session layer (creation rate) are counted") {
    auto options = test_options();
    options.creation_burst = 1;
    options.creation_rate = 0.001;
    megaphone::test::test_server f{options};

    http_client c{f.port()};
    const auto count = [&c] {
        const auto m = parse_with_prometheus_client(c.get("/metrics").body);
        return m.at("megaphone_refusals_total{limit=\"creation_rate\"}");
    };
    const auto before = count();
    create_session(c, 10);
    REQUIRE(c.post_json("/comet", json{{"rid", 20}}).status == 429);
    REQUIRE(c.post_json("/comet", json{{"rid", 30}}).status == 429);
    CHECK(count() == before + 2);
    const auto m = parse_with_prometheus_client(c.get("/metrics").body);
    for (const char* limit : {"request_timeout", "idle_timeout", "connections", "accept_failed"})
        CHECK(m.samples.count("megaphone_refusals_total{limit=\"" + std::string(limit) + "\"}") ==
              1);
}
