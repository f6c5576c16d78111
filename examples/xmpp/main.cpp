// megaphone-xmpp: the XMPP example server. A small XMPP service (examples/xmpp/xmpp_core.hpp)
// over BOSH at POST /bosh, the hub on the JSON transport at POST /comet, the pages of web/.
#include "app/allocator.hpp"
#include "app/cli.hpp"
#include "app/hub.hpp"
#include "examples/xmpp/xmpp_app.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct xmpp_options {
    std::string domain = "localhost";
    std::string users = MEGAPHONE_XMPP_USERS;
    bool users_given = false;
};

/// Takes --domain and --users (the options megaphone::parse_command_line does not know) out of
/// argv; everything else is left for it.
xmpp_options take_xmpp_options(int& argc, char** argv) {
    xmpp_options o;
    std::vector<char*> rest{argv[0]};
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--domain" || arg == "--users") {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "megaphone-xmpp: %s takes a value (see --help)\n", argv[i]);
                std::exit(2);
            }
            if (arg == "--domain") {
                o.domain = argv[++i];
            } else {
                o.users = argv[++i];
                o.users_given = true;
            }
        } else {
            rest.push_back(argv[i]);
            // Every shared option but --help takes a value, which may itself start with "--".
            if (arg.starts_with("--") && arg != "--help" && i + 1 < argc)
                rest.push_back(argv[++i]);
        }
    }
    for (std::size_t i = 0; i < rest.size(); ++i)
        argv[i] = rest[i];
    argc = static_cast<int>(rest.size());
    argv[argc] = nullptr;
    return o;
}

} // namespace

int main(int argc, char** argv) {
    megaphone::tune_allocator(argv); // first: it may execute the program again
    const xmpp_options xo = take_xmpp_options(argc, argv);
    auto options = megaphone::parse_command_line(
        argc, argv,
        "megaphone-xmpp: a small XMPP service over BOSH at POST /bosh (SASL PLAIN and ANONYMOUS, "
        "echo bot echo@DOMAIN), the hub at POST /comet, pages from --static-dir (default: the "
        "source tree's web/).\n"
        "  --domain DOMAIN       the XMPP domain served [localhost]\n"
        "  --users FILE          accounts for SASL PLAIN, user:password a line "
        "[examples/xmpp/users.txt]");
    if (options.static_dir.empty())
        options.static_dir = MEGAPHONE_WEB_DIR;

    megaphone::examples::xmpp::config cfg;
    cfg.domain = xo.domain;
    if (!megaphone::examples::xmpp::parse_jid(cfg.domain) ||
        cfg.domain.find_first_of("@/") != std::string::npos) {
        std::fprintf(stderr, "megaphone-xmpp: --domain %s is not a domain\n", cfg.domain.c_str());
        return 2;
    }
    try {
        if (xo.users_given || std::filesystem::exists(xo.users))
            cfg.users = megaphone::examples::xmpp::load_users(xo.users);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "megaphone-xmpp: %s\n", e.what());
        return 2;
    }

    megaphone::server srv{options};
    megaphone::hub hub{srv};
    megaphone::examples::xmpp_app xmpp{cfg};
    srv.mount("/comet", hub);
    srv.mount_bosh("/bosh", xmpp);
    std::printf("megaphone-xmpp: domain %s, %zu account(s) for PLAIN, BOSH at /bosh\n",
                xmpp.core().settings().domain.c_str(), cfg.users.size());
    std::fflush(stdout);
    return megaphone::serve_until_signalled(srv);
}
