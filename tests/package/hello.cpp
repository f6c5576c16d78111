// An app built against the installed package: greets each session, echoes what it is sent, and
// serves the installed browser client.
#include "app/cli.hpp"
#include "app/server.hpp"
#include "app/session.hpp"

class echo_app final : public megaphone::application {
public:
    void on_open(megaphone::session& s) override { s.push({{"hello", "installed"}}); }
    void on_message(megaphone::session& s, const megaphone::message& m) override {
        s.push({{"echo", m.json()}});
    }
};

int main(int argc, char** argv) {
    auto options = megaphone::parse_command_line(argc, argv, "hello-installed: an echo app");
    if (options.static_dir.empty())
        options.static_dir = MEGAPHONE_WEB_DIR;
    megaphone::server srv{options};
    echo_app app;
    srv.mount("/comet", app);
    return megaphone::serve_until_signalled(srv);
}
