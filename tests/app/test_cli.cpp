// The option table: command line, --config file and --help read the same table.
#include "app/cli.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
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
