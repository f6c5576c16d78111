// The command line and configuration file shared by `megaphone` and the example servers.
//
// Every option lives in one table (option_table()): the command-line parser, the --config
// loader and --help all read it, so an option added to the table is in all three (how to add
// one: the comment above make_table() in app/cli.cpp).
#pragma once

#include "app/server.hpp"

#include <nlohmann/json_fwd.hpp>

#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace megaphone {

/// A bad option or configuration value; what() names the option or the key.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// One option: `--name VALUE` on the command line, key "name" in a --config file.
struct option_spec {
    /// The value's type; in a --config file: a string, a number, an array of strings, a boolean.
    enum class kind { text, number, list, flag };
    std::string_view name;       ///< without the dashes
    std::string_view value_name; ///< for --help ("N", "S", "ADDR"); empty for a flag
    kind type;
    std::string_view help;
    /// The current value as --help shows it.
    std::function<std::string(const server_options&)> shown;
    /// Sets the option from its text ("true"/"false" for a flag; a list option appends one
    /// item). Throws usage_error naming `as` (the option or key as the user wrote it).
    std::function<void(server_options&, std::string_view as, std::string_view value)> set;
    /// List options only: empties the list (a source that gives the option replaces it).
    std::function<void(server_options&)> clear;
};

/// Every option, in --help order.
const std::vector<option_spec>& option_table();

/// Applies a --config document (a JSON object keyed by option names) to `o`. Throws
/// usage_error naming the key for an unknown key or a value of the wrong type or range.
void apply_config(server_options& o, const nlohmann::json& config);
/// Reads and applies a --config file. Throws usage_error.
void apply_config_file(server_options& o, const std::string& path);
/// Checks the options together (after every source is applied). Throws usage_error.
void validate(const server_options& o);

/// The megaphone binary's defaults: server_options' own, but the internal door on its fixed port
/// (9080) rather than a free one, and no publishing by sessions without a token
/// (--client-publish: none) rather than anywhere.
server_options cli_defaults();

struct parsed_command_line {
    server_options options;
    bool help = false; ///< --help was given
};
/// Parses the arguments (argv without argv[0]): defaults, then the --config file if any, then
/// every other option, wherever --config stands. Throws usage_error.
parsed_command_line parse_arguments(const std::vector<std::string_view>& args);

/// Prints --help: `about`, then every option with its default.
void print_help(std::FILE* out, std::string_view about);

/// With `--redis` URLs in `o`, sets o.make_bus to the Redis bus (cluster/redis_bus.hpp) and
/// o.make_router to forwarding (cluster/forwarder.hpp; on only with a cluster key).
void use_redis(server_options& o);

/// Parses argv into options (use_redis() included); prints --help or an error (exit code 2) and
/// exits. `about` is the first line of --help.
server_options parse_command_line(int argc, char** argv, std::string_view about);

/// Starts `srv`, prints "megaphone: listening on http://ADDR:PORT", serves until SIGINT or
/// SIGTERM, then stops gracefully. Returns the process exit code.
int serve_until_signalled(server& srv);

} // namespace megaphone
