// megaphone-chaos-server: the server side of the chaos test (tests/js/chaos.test.mjs).
//
// The JSON transport at POST /comet with an application that checks what each session receives
// and pushes numbered messages on request:
//   client → server  each session sends {"n": 1}, {"n": 2}, …; the app records, per session, how
//                    many arrived in order and every one that came twice or out of order.
//   server → client  POST /chaos/push with {"count": C} pushes the next C numbers {"m": k} to every
//                    open session (each session has its own sequence, starting at 1).
//   GET /chaos/report  {"sessions": {sid: {"received": N, "pushed": M, "errors": [...],
//                    "closed": condition|null}}}, every session ever opened.
// Options are the usual ones (app/cli.cpp), so the test runs it with --port 0.
#include "app/cli.hpp"
#include "app/session.hpp"

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

using megaphone::close_reason;
using megaphone::content_kind;
using megaphone::packet;
using megaphone::response;

struct record {
    long received = 0; // client messages seen in order: the highest n so far
    long pushed = 0;   // numbers pushed to this session
    std::vector<std::string> errors;
    std::string closed; // the close condition, once closed
};

class chaos_app final : public megaphone::application {
public:
    void on_open(megaphone::session& s) override {
        std::lock_guard lock{mutex_};
        sessions_[std::string(s.id())];
    }

    void on_message(megaphone::session& s, const megaphone::message& m) override {
        const auto& msg = m.json();
        std::lock_guard lock{mutex_};
        record& r = sessions_[std::string(s.id())];
        if (!msg.is_object() || !msg.contains("n") || !msg["n"].is_number_integer()) {
            r.errors.push_back("not a numbered message: " + msg.dump());
            return;
        }
        const long n = msg["n"].get<long>();
        if (n == r.received + 1)
            r.received = n;
        else
            r.errors.push_back("got " + std::to_string(n) + " after " + std::to_string(r.received));
    }

    void on_close(megaphone::session& s, close_reason why) override {
        std::lock_guard lock{mutex_};
        sessions_[std::string(s.id())].closed = megaphone::condition(why);
    }

    /// Pushes the next `count` numbers to every open session; returns how many sessions.
    std::size_t push_all(megaphone::broker& b, long count) {
        // Numbered under the lock, pushed outside it: a push may run inline and close a session,
        // whose on_close takes the lock.
        std::vector<std::pair<std::string, long>> batch;
        {
            std::lock_guard lock{mutex_};
            for (auto& [sid, r] : sessions_)
                if (r.closed.empty()) {
                    batch.emplace_back(sid, r.pushed + 1);
                    r.pushed += count;
                }
        }
        for (const auto& [sid, first] : batch)
            for (long i = 0; i < count; ++i)
                b.push(sid, nlohmann::json{{"m", first + i}});
        return batch.size();
    }

    nlohmann::json report() {
        std::lock_guard lock{mutex_};
        nlohmann::json out = nlohmann::json::object();
        for (const auto& [sid, r] : sessions_)
            out[sid] = {{"received", r.received},
                        {"pushed", r.pushed},
                        {"errors", r.errors},
                        {"closed", r.closed.empty() ? nlohmann::json() : nlohmann::json(r.closed)}};
        return {{"sessions", out}};
    }

private:
    std::mutex mutex_;
    std::map<std::string, record, std::less<>> sessions_;
};

response json_answer(unsigned status, const nlohmann::json& body) {
    return {status, content_kind::json, packet::from(body.dump())};
}

} // namespace

int main(int argc, char** argv) {
    auto options = megaphone::parse_command_line(
        argc, argv, "megaphone-chaos-server: the server of the chaos test (tests/js)");
    megaphone::server srv{options};
    chaos_app app;
    srv.mount("/comet", app);
    srv.route(
        megaphone::http::verb::post, "/chaos/push", [&](megaphone::incoming& in, std::string_view) {
            const auto body = nlohmann::json::parse(in.request.body(), nullptr, false);
            if (!body.is_object() || !body.contains("count") || !body["count"].is_number_integer())
                return in.ex.reply(json_answer(400, {{"error", "want {\"count\": N}"}}));
            const auto reached = app.push_all(srv, body["count"].get<long>());
            in.ex.reply(json_answer(200, {{"sessions", reached}}));
        });
    srv.route(megaphone::http::verb::get, "/chaos/report",
              [&](megaphone::incoming& in, std::string_view) {
                  in.ex.reply(json_answer(200, app.report()));
              });
    return megaphone::serve_until_signalled(srv);
}
