// The option table: command line, --config file and --help read the same table.
#include "app/cli.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

using megaphone::cli_defaults;
using megaphone::option_table;
using megaphone::parse_arguments;
using megaphone::server_options;
using megaphone::usage_error;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string write_config(const std::string& name, const json& config) {
    const std::string path = std::string(MEGAPHONE_BINARY_DIR) + "/" + name;
    std::ofstream(path) << config.dump(2);
    return path;
}

/// The message of the usage_error that applying `config` to the defaults throws.
std::string config_error(const json& config) {
    server_options o;
    try {
        megaphone::apply_config(o, config);
    } catch (const usage_error& e) {
        return e.what();
    }
    return "(accepted)";
}

} // namespace

TEST_CASE("cli: examples/megaphone.json has every option, at its default") {
    const std::string path = std::string(MEGAPHONE_SOURCE_DIR) + "/examples/megaphone.json";
    const json example = json::parse(std::ifstream(path));
    std::set<std::string> keys, names;
    for (const auto& [key, value] : example.items())
        keys.insert(key);
    for (const auto& spec : option_table())
        names.insert(std::string(spec.name));
    CHECK(keys == names);

    const auto parsed = parse_arguments({"--config", path});
    CHECK_FALSE(parsed.help);
    const server_options defaults = cli_defaults();
    for (const auto& spec : option_table()) {
        INFO(spec.name);
        CHECK(spec.shown(parsed.options) == spec.shown(defaults));
    }
    CHECK(parsed.options.port == 8080);
    CHECK(parsed.options.engine.max_wait == 60s);
    CHECK(parsed.options.http.cors_origins == std::vector<std::string>{"*"});
    CHECK(parsed.options.log.level == megaphone::log_level::info);
}

TEST_CASE("cli: the command line overrides the config file wherever --config stands") {
    const auto path = write_config("test-cli-override.json",
                                   {{"port", 7000},
                                    {"wait", 2.5},
                                    {"hold", 2},
                                    {"cors-origin", {"https://a.example", "https://b.example"}},
                                    {"log-level", "debug"},
                                    {"access-log", "-"},
                                    {"node-id", "cfg"}});
    for (const bool config_first : {true, false}) {
        INFO("--config first: " << config_first);
        std::vector<std::string_view> args{
            "--port", "9000", "--cors-origin", "https://c.example", "--log-level", "warn"};
        const std::vector<std::string_view> config{"--config", path};
        args.insert(config_first ? args.begin() : args.end(), config.begin(), config.end());
        const auto o = parse_arguments(args).options;
        CHECK(o.port == 9000); // the command line wins
        CHECK(o.log.level == megaphone::log_level::warn);
        CHECK(o.http.cors_origins == std::vector<std::string>{"https://c.example"});
        CHECK(o.engine.max_wait == 2500ms); // from the file
        CHECK(o.engine.max_hold == 2);
        CHECK(o.engine.node_id == "cfg");
        CHECK(o.log.access_log == "-");
        CHECK(o.engine.inactivity == 45s); // default
    }
}

TEST_CASE("cli: an unknown configuration key is refused, naming it") {
    CHECK_THAT(config_error({{"prot", 8080}}), Catch::Contains("\"prot\""));
    CHECK_THAT(config_error({{"config", "other.json"}}), Catch::Contains("\"config\""));
    CHECK_THAT(config_error(json::array({1, 2})), Catch::Contains("JSON object"));
    CHECK_THROWS_WITH(parse_arguments({"--prot", "1"}), Catch::Contains("--prot"));
}

TEST_CASE("cli: a configuration value of the wrong type or range is refused, naming the key") {
    CHECK_THAT(config_error({{"port", "8080"}}),
               Catch::Contains("\"port\"") && Catch::Contains("a number"));
    CHECK_THAT(config_error({{"port", 70000}}), Catch::Contains("\"port\""));
    CHECK_THAT(config_error({{"wait", -1}}), Catch::Contains("\"wait\""));
    CHECK_THAT(config_error({{"hold", 1.5}}), Catch::Contains("\"hold\""));
    CHECK_THAT(config_error({{"address", 127}}),
               Catch::Contains("\"address\"") && Catch::Contains("a string"));
    CHECK_THAT(config_error({{"cors-origin", "*"}}),
               Catch::Contains("\"cors-origin\"") && Catch::Contains("array of strings"));
    CHECK_THAT(config_error({{"cors-origin", {"*", 1}}}), Catch::Contains("\"cors-origin\""));
    CHECK_THAT(config_error({{"log-level", "loud"}}), Catch::Contains("\"log-level\""));
    CHECK_THAT(config_error({{"threads", true}}), Catch::Contains("\"threads\""));
    CHECK_THAT(config_error({{"placement", "evenly"}}),
               Catch::Contains("\"placement\"") && Catch::Contains("fill or spread"));

    const auto bad = write_config("test-cli-bad.json", {{"max-queue", 0}});
    CHECK_THROWS_WITH(parse_arguments({"--config", bad}), Catch::Contains("max-queue"));
    CHECK_THROWS_WITH(parse_arguments({"--config", "/nonexistent/megaphone.json"}),
                      Catch::Contains("/nonexistent/megaphone.json"));
    const std::string broken = std::string(MEGAPHONE_BINARY_DIR) + "/test-cli-broken.json";
    std::ofstream(broken) << "{\"port\": 80";
    CHECK_THROWS_WITH(parse_arguments({"--config", broken}), Catch::Contains("not valid JSON"));
}

TEST_CASE("cli: --help lists every option with its default") {
    std::FILE* out = std::tmpfile();
    REQUIRE(out);
    megaphone::print_help(out, "about line");
    std::string text(static_cast<std::size_t>(std::ftell(out)), '\0');
    std::rewind(out);
    CHECK(std::fread(text.data(), 1, text.size(), out) == text.size());
    std::fclose(out);

    CHECK(text.starts_with("about line\n"));
    const server_options defaults = cli_defaults();
    for (const auto& spec : option_table()) {
        INFO(spec.name);
        CHECK_THAT(text, Catch::Contains("--" + std::string(spec.name) + " ") &&
                             Catch::Contains("[" + spec.shown(defaults) + "]"));
    }
    CHECK_THAT(text, Catch::Contains("--config FILE") && Catch::Contains("--help"));
    CHECK(parse_arguments({"--port", "1", "--help"}).help);
}

namespace {

/// Writes `content` to a file of the build directory with permissions `mode`; its path.
std::string secret_file(const std::string& name, const std::string& content, mode_t mode = 0600) {
    const std::string path = std::string(MEGAPHONE_BINARY_DIR) + "/" + name;
    std::filesystem::remove(path);
    std::ofstream(path) << content;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
    return path;
}

/// The message of the usage_error that parsing `args` throws.
std::string parse_error(const std::vector<std::string_view>& args) {
    try {
        parse_arguments(args);
    } catch (const usage_error& e) {
        return e.what();
    }
    return "(accepted)";
}

} // namespace

TEST_CASE("cli: --admin-token-file reads the admin token, as the other secret files") {
    const std::string secret = "adm1n-file-s3cret";
    const auto path = secret_file("test-cli-admin-token", secret + "\n");
    CHECK(parse_arguments({"--admin-token-file", path}).options.admin_token == secret);
    CHECK(parse_arguments(
              {"--config", write_config("test-cli-admin-file.json", {{"admin-token-file", path}})})
              .options.admin_token == secret);
    // The command line wins over the file, whichever form each uses.
    const auto inline_config = write_config("test-cli-admin-inline.json", {{"admin-token", "x"}});
    CHECK(parse_arguments({"--config", inline_config, "--admin-token-file", path})
              .options.admin_token == secret);
    const auto file_config =
        write_config("test-cli-admin-file2.json", {{"admin-token-file", path}});
    CHECK(parse_arguments({"--admin-token", "y", "--config", file_config}).options.admin_token ==
          "y");
    // examples/megaphone.json has both keys, empty: neither is given.
    CHECK(
        parse_arguments({"--config", std::string(MEGAPHONE_SOURCE_DIR) + "/examples/megaphone.json",
                         "--admin-token-file", path})
            .options.admin_token == secret);

    // A file others may read, or none: refused, naming the option and the file, not the token.
    const auto loose = secret_file("test-cli-admin-token-loose", secret, 0644);
    const std::string refused = parse_error({"--admin-token-file", loose});
    CHECK_THAT(refused, Catch::Contains("--admin-token-file") && Catch::Contains(loose));
    CHECK(refused.find(secret) == std::string::npos);
    CHECK_THAT(parse_error({"--admin-token-file", "/nonexistent/admin-token"}),
               Catch::Contains("/nonexistent/admin-token"));
}

TEST_CASE("cli: a secret given both inline and as a file in one place is refused") {
    const auto path = secret_file("test-cli-admin-token-both", "adm1n-file-s3cret");
    CHECK_THAT(parse_error({"--admin-token", "inline-s3cret", "--admin-token-file", path}),
               Catch::Contains("--admin-token and --admin-token-file"));
    CHECK_THAT(parse_error({"--admin-token-file", path, "--admin-token", "inline-s3cret"}),
               Catch::Contains("--admin-token and --admin-token-file"));
    CHECK_THAT(config_error({{"admin-token", "inline-s3cret"}, {"admin-token-file", path}}),
               Catch::Contains("admin-token and admin-token-file") &&
                   Catch::Contains("configuration"));
    // The other secrets and their files, the same.
    for (const std::string name : {"publish-key", "metrics-token", "token-secret", "cluster-key"}) {
        INFO(name);
        const std::string file = "--" + name + "-file";
        CHECK_THAT(parse_error({"--" + name, "inline-s3cret", file, path}),
                   Catch::Contains("--" + name + " and " + file));
    }
}

TEST_CASE("cli: errors name options, never a value that may be a secret") {
    for (const auto& args :
         std::vector<std::vector<std::string_view>>{{"--admin-token=arg-s3cret"},
                                                    {"--publish-key=arg-s3cret"},
                                                    {"arg-s3cret"},
                                                    {"--port", "1", "arg-s3cret"},
                                                    {"--reuse-port", "arg-s3cret"}}) {
        const std::string message = parse_error(args);
        INFO(message);
        CHECK(message != "(accepted)");
        CHECK(message.find("s3cret") == std::string::npos);
    }
    CHECK_THAT(parse_error({"--admin-token=arg-s3cret"}), Catch::Contains("--admin-token"));

    // A configuration file that is not JSON: where, not what was read there.
    const std::string broken = std::string(MEGAPHONE_BINARY_DIR) + "/test-cli-secret-broken.json";
    std::ofstream(broken) << "{\"admin-token\": \"config-s3cret\x01\"}";
    const std::string message = parse_error({"--config", broken});
    CHECK_THAT(message, Catch::Contains("not valid JSON") && Catch::Contains("line 1"));
    CHECK(message.find("s3cret") == std::string::npos);
    const std::string unquoted = std::string(MEGAPHONE_BINARY_DIR) + "/test-cli-secret-bare.json";
    std::ofstream(unquoted) << "{\"admin-token\": config-s3cret}";
    CHECK(parse_error({"--config", unquoted}).find("s3cret") == std::string::npos);
    // A value of the wrong type: the key, not the value.
    const std::string typed = config_error({{"admin-token", {"config-s3cret"}}});
    CHECK_THAT(typed, Catch::Contains("\"admin-token\""));
    CHECK(typed.find("s3cret") == std::string::npos);
}
