// megaphone-demo: the demo server. The hub at POST /comet, the chat at POST /chat, a ticker
// publishing to the hub's "ticker" channel every 100 ms, the pages of web/, and /admin.
#include "app/cli.hpp"
#include "app/hub.hpp"
#include "examples/chat/chat_app.hpp"
#include "examples/ticker/ticker.hpp"

#include <cstdio>

int main(int argc, char** argv) {
    auto options = megaphone::parse_command_line(
        argc, argv,
        "megaphone-demo: the Megaphone demo server (hub at /comet, chat at /chat, ticker on "
        "channel \"ticker\", pages from --static-dir, default: the source tree's web/).");
    if (options.static_dir.empty())
        options.static_dir = MEGAPHONE_WEB_DIR;
    // The demo always has its /admin dashboard: with --admin-token, or a fresh random token.
    if (options.admin_token.empty())
        options.admin_token = megaphone::random_token(16);
    std::printf("megaphone-demo: admin dashboard at /admin?token=%s\n",
                options.admin_token.c_str());

    megaphone::server srv{options};
    megaphone::hub hub{srv};
    megaphone::examples::chat_app chat;
    srv.mount("/comet", hub);
    srv.mount("/chat", chat);
    megaphone::examples::ticker ticker{srv, "ticker", std::chrono::milliseconds(100)};
    ticker.start();
    const int code = megaphone::serve_until_signalled(srv);
    ticker.stop();
    return code;
}
