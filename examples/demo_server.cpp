// megaphone-demo: the demo server. The hub at POST /comet, the chat at POST /chat, a ticker
// publishing to the hub's "ticker" channel every 100 ms, the pages of web/, and /admin.
//
// Who may do what (issue 16): visitors without a token may subscribe (the ticker) but publish
// nowhere (--client-publish keeps its default, none), so nobody but the server writes the
// ticker. The chat wants a token: GET /demo/token?nick=NAME mints one for NAME (an HS256 JWT,
// signed by cpp-jwt with a random secret made at start and never shown, valid one hour) that
// lets its session read the chat rooms and the ticker and publish to the chat rooms only. A real
// application would mint tokens after logging its user in; the demo trusts any nickname.
#include "app/allocator.hpp"
#include "app/cli.hpp"
#include "app/hub.hpp"
#include "examples/chat/chat_app.hpp"
#include "examples/ticker/ticker.hpp"

#include <jwt/jwt.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace http = megaphone::http;

constexpr std::size_t max_nick = 32;

/// A nickname: 1 to 32 letters, digits, '-' or '_'.
bool valid_nick(std::string_view nick) {
    if (nick.empty() || nick.size() > max_nick)
        return false;
    for (const char c : nick) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

/// The value of `name` in the query string `query` ("a=1&nick=x"); nullopt when absent.
std::optional<std::string_view> query_value(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        const auto eq = pair.find('=');
        if (pair.substr(0, eq) == name)
            return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    }
    return std::nullopt;
}

megaphone::response json_answer(unsigned status, const nlohmann::json& body) {
    megaphone::response r{status, megaphone::content_kind::json,
                          megaphone::packet::from(body.dump())};
    r.headers = megaphone::packet::from(std::string{"Cache-Control: no-store\r\n"});
    return r;
}

/// A token for `nick`: sub = nick, exp = now + 1 h; subscribe to the chat rooms and the ticker,
/// publish to the chat rooms only.
std::string mint_token(const std::string& secret, const std::string& nick) {
    jwt::jwt_object token{jwt::params::algorithm("HS256"), jwt::params::secret(secret)};
    token.add_claim("sub", nick);
    token.add_claim("iat", std::chrono::system_clock::now());
    token.add_claim("exp", std::chrono::system_clock::now() + std::chrono::hours(1));
    token.add_claim("channels", std::vector<std::string>{"chat*", "ticker"});
    token.add_claim("publish", std::vector<std::string>{"chat*"});
    return token.signature();
}

} // namespace

int main(int argc, char** argv) {
    megaphone::tune_allocator(argv); // first: it may execute the program again
    auto options = megaphone::parse_command_line(
        argc, argv,
        "megaphone-demo: the Megaphone demo server (hub at /comet, chat at /chat, ticker on "
        "channel \"ticker\", chat tokens at /demo/token?nick=NAME, pages from --static-dir, "
        "default: the source tree's web/).");
    if (options.static_dir.empty())
        options.static_dir = MEGAPHONE_WEB_DIR;
    // The demo always has its /admin dashboard: with --admin-token, or a fresh random token.
    if (options.admin_token.empty())
        options.admin_token = megaphone::random_token(16);
    std::printf("megaphone-demo: admin dashboard at /admin?token=%s\n",
                options.admin_token.c_str());
    // The secret that signs the chat's tokens: --token-secret[-file], or 48 random bytes made
    // now (never printed: whoever has it can mint tokens).
    if (options.clients.token_secret.empty())
        options.clients.token_secret = megaphone::random_token(48);
    const std::string secret = options.clients.token_secret;

    megaphone::server srv{options};
    megaphone::hub hub{srv};
    megaphone::examples::chat_app chat;
    srv.mount("/comet", hub);
    srv.mount("/chat", chat);
    srv.route(http::verb::get, "/demo/token",
              [secret](megaphone::incoming& in, std::string_view rest) {
                  if (!rest.empty()) // the route is a prefix: /demo/tokens is not it
                      return in.ex.reply(json_answer(404, {{"error", "not found"}}));
                  const std::string_view target = in.request.target();
                  const auto question = target.find('?');
                  const auto nick = question == std::string_view::npos
                                        ? std::nullopt
                                        : query_value(target.substr(question + 1), "nick");
                  if (!nick || !valid_nick(*nick))
                      return in.ex.reply(json_answer(
                          400, {{"error", "nick: 1 to 32 letters, digits, '-' or '_'"}}));
                  in.ex.reply(json_answer(200, {{"token", mint_token(secret, std::string{*nick})}}));
              });
    std::printf("megaphone-demo: chat tokens at /demo/token?nick=NAME (visitors without one "
                "publish nowhere)\n");
    megaphone::examples::ticker ticker{srv, "ticker", std::chrono::milliseconds(100)};
    ticker.start();
    const int code = megaphone::serve_until_signalled(srv);
    ticker.stop();
    return code;
}
