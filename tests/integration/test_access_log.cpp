// The access log (--access-log): one key=value line per answered HTTP request.
#include "support/http_client.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

using megaphone::test::create_session;
using megaphone::test::http_client;
using megaphone::test::test_options;
using megaphone::test::test_server;
namespace http = boost::beast::http;

TEST_CASE("access log: one line per request with client, method, path, status, bytes, duration") {
    const std::string path = std::string(MEGAPHONE_BINARY_DIR) + "/test-access.log";
    std::filesystem::remove(path);
    auto options = test_options();
    options.log.access_log = path;
    std::size_t created_bytes = 0;
    {
        std::optional<test_server> srv;
        srv.emplace(options);
        http_client c{srv->port()};
        created_bytes = create_session(c, 1000).body.size();
        c.send(http::verb::get, "/nope\"x\"");
        CHECK(c.receive().status == 404);
        srv.reset(); // stopped and joined: every line is written
    }
    std::ifstream in{path};
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    REQUIRE(lines.size() == 2);
    const std::regex form{
        R"(time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z client=127\.0\.0\.1:\d+ )"
        R"(method=(\S+) path=(\S+) status=(\d+) bytes=(\d+) duration_ms=\d+\.\d{3})"};
    std::smatch m;
    REQUIRE(std::regex_match(lines[0], m, form));
    CHECK(m[1] == "POST");
    CHECK(m[2] == "/comet");
    CHECK(m[3] == "200");
    CHECK(std::stoul(m[4]) > created_bytes); // head and body
    REQUIRE(std::regex_match(lines[1], m, form));
    CHECK(m[1] == "GET");
    CHECK(m[2] == "/nope%22x%22");
    CHECK(m[3] == "404");
}
