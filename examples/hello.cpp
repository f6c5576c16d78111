// A complete Megaphone app: a shared counter. Every browser tab that connects is greeted, can
// send {"add": N}, and sees every change pushed to everyone at once.
#include "app/allocator.hpp"
#include "app/cli.hpp"
#include "app/server.hpp"
#include "app/session.hpp"

#include <atomic>

class counter_app final : public megaphone::application {
public:
    void on_open(megaphone::session& s) override {
        s.push({{"hello", s.id()}, {"count", count_.load()}}); // goes out with the creation answer
        s.subscribe("counter");
    }
    void on_message(megaphone::session& s, const megaphone::message& m) override {
        const auto& msg = m.json();
        if (msg.contains("add") && msg["add"].is_number_integer())
            s.broker().publish("counter", {{"count", count_ += msg["add"].get<long>()}});
    }
    void on_close(megaphone::session&, megaphone::close_reason) override {}

private:
    std::atomic<long> count_{0};
};

int main(int argc, char** argv) {
    megaphone::tune_allocator(argv); // first: it may execute the program again
    auto options = megaphone::parse_command_line(argc, argv, "hello: a shared counter");
    megaphone::server srv{options};
    counter_app app;
    srv.mount("/comet", app);
    return megaphone::serve_until_signalled(srv);
}
