// The command line shared by `megaphone` and the example servers.
#pragma once

#include "app/server.hpp"

#include <string_view>

namespace megaphone {

/// Parses argv into options; prints --help (every option and its default) or an error and
/// exits. `about` is the first line of --help.
server_options parse_command_line(int argc, char** argv, std::string_view about);

/// Starts `srv`, prints "megaphone: listening on http://ADDR:PORT", serves until SIGINT or
/// SIGTERM, then stops gracefully. Returns the process exit code.
int serve_until_signalled(server& srv);

} // namespace megaphone
