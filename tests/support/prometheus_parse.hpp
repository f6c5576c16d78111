// Reads a /metrics exposition with the reference parser (prometheus_client.parser from Debian's
// python3-prometheus-client, run by tests/integration/parse_metrics.py): what the test checks is
// what a real Prometheus client reads, not what our own text matching would.
#pragma once

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace megaphone::test {

/// What the reference parser read: sample name + sorted labels → value; families' types and help.
struct parsed_metrics {
    std::map<std::string, double> samples;    // key: name{a="x",b="y"} with labels sorted
    std::map<std::string, std::string> types; // family name → type
    std::map<std::string, std::string> help;

    double at(const std::string& key) const {
        auto it = samples.find(key);
        if (it == samples.end())
            FAIL("no sample " << key);
        return it->second;
    }
};

inline parsed_metrics parse_with_prometheus_client(const std::string& text) {
    namespace fs = std::filesystem;
    using nlohmann::json;
    // One directory per process: ctest -j runs test cases side by side.
    const fs::path dir =
        fs::path(MEGAPHONE_BINARY_DIR) / ("test-metrics-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path in = dir / "metrics.txt";
    const fs::path out = dir / "parsed.json";
    std::ofstream(in) << text;
    fs::remove(out);
    const std::string cmd = "/usr/bin/python3 '" MEGAPHONE_SOURCE_DIR
                            "/tests/integration/parse_metrics.py' '" +
                            in.string() + "' '" + out.string() + "'";
    INFO("python3-prometheus-client is needed (scripts/setup installs it)");
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream f(out);
    const json doc = json::parse(f);
    fs::remove_all(dir);
    parsed_metrics p;
    for (const json& fam : doc.at("families")) {
        p.types[fam.at("name")] = fam.at("type");
        p.help[fam.at("name")] = fam.at("documentation");
        for (const json& s : fam.at("samples")) {
            std::string key = s.at("name").get<std::string>();
            if (!s.at("labels").empty()) {
                key += '{';
                bool first = true;
                for (const auto& [k, v] : s.at("labels").items()) { // nlohmann sorts keys
                    key += (first ? "" : ",") + k + "=\"" + v.get<std::string>() + "\"";
                    first = false;
                }
                key += '}';
            }
            const json& v = s.at("value");
            p.samples[key] = v.is_number() ? v.get<double>() : -1;
        }
    }
    return p;
}

} // namespace megaphone::test
