// megaphone: the server with the built-in hub. `megaphone --help` lists every option.
#include "app/allocator.hpp"
#include "app/cli.hpp"
#include "app/hub.hpp"

int main(int argc, char** argv) {
    megaphone::tune_allocator(argv); // first: it may execute the program again
    auto options = megaphone::parse_command_line(
        argc, argv,
        "megaphone: a Comet long-polling server. JSON transport and hub at POST /comet, "
        "POST /publish/{channel} for backends.");
    megaphone::server srv{options};
    megaphone::hub hub{srv};
    srv.mount("/comet", hub);
    return megaphone::serve_until_signalled(srv);
}
