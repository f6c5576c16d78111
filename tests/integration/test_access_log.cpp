// The access log (--access-log): one key=value line per answered HTTP request.
#include "support/http_client.hpp"
#include "support/test_server.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

using megaphone::test::create_session;
using megaphone::test::http_client;
using megaphone::test::test_options;
using megaphone::test::test_server;
namespace http = boost::beast::http;

namespace {

std::string file_text(const std::string& path) {
    std::ifstream in{path};
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::vector<std::string> file_lines(const std::string& path) {
    std::ifstream in{path};
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

/// The `path=` field of an access-log line.
std::string path_field(const std::string& line) {
    const auto at = line.find(" path=");
    if (at == std::string::npos)
        return {};
    const auto from = at + 6;
    return line.substr(from, line.find(' ', from) - from);
}

/// While alive, what the process writes to stderr (the server's log) goes to a file instead.
class stderr_to_file {
public:
    explicit stderr_to_file(const std::string& path) {
        std::fflush(stderr);
        saved_ = ::dup(2);
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        REQUIRE(saved_ >= 0);
        REQUIRE(fd >= 0);
        ::dup2(fd, 2);
        ::close(fd);
    }
    ~stderr_to_file() {
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
    }
    stderr_to_file(const stderr_to_file&) = delete;
    stderr_to_file& operator=(const stderr_to_file&) = delete;

private:
    int saved_ = -1;
};

} // namespace

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

TEST_CASE("access log: every credential query parameter is written as REDACTED") {
    // Each parameter of app/redact.hpp, written out here: one missing from the code fails.
    const std::vector<std::string> names{"token",         "access_token", "refresh_token",
                                         "id_token",      "jwt",          "auth",
                                         "authorization", "key",          "api_key",
                                         "apikey",        "publish_key",  "metrics_token",
                                         "admin_token",   "cluster_key",  "secret",
                                         "password",      "signature",    "sid"};
    const std::string admin_token = "adm1n-query-s3cret";
    const std::string path = std::string(MEGAPHONE_BINARY_DIR) + "/test-access-redact.log";
    std::filesystem::remove(path);
    auto options = test_options();
    options.log.access_log = path;
    options.admin_token = admin_token;
    {
        std::optional<test_server> srv;
        srv.emplace(options);
        http_client c{srv->port()};
        for (std::size_t i = 0; i < names.size(); ++i)
            CHECK(c.get("/x?a=1&" + names[i] + "=value-" + std::to_string(i) + "-s3cret&b=2")
                      .status == 404);
        // The dashboard's link, and the spellings that a client might use.
        CHECK(c.get("/admin?token=" + admin_token).status == 200);
        CHECK(c.get("/admin/sessions?Token=" + admin_token).status == 403); // header only
        CHECK(c.get("/x?%74oken=encoded-s3cret&ACCESS-TOKEN=upper-s3cret").status == 404);
        CHECK(c.post("/comet?sid=sid-s3cret", R"({"rid":1000})").status == 200);
        srv.reset(); // stopped and joined: every line is written
    }
    const auto lines = file_lines(path);
    REQUIRE(lines.size() == names.size() + 4);
    for (std::size_t i = 0; i < names.size(); ++i) {
        INFO(names[i]);
        CHECK(path_field(lines[i]) == "/x?a=1&" + names[i] + "=REDACTED&b=2");
    }
    CHECK(path_field(lines[names.size()]) == "/admin?token=REDACTED");
    CHECK(path_field(lines[names.size() + 1]) == "/admin/sessions?Token=REDACTED");
    CHECK(path_field(lines[names.size() + 2]) == "/x?%74oken=REDACTED&ACCESS-TOKEN=REDACTED");
    CHECK(path_field(lines[names.size() + 3]) == "/comet?sid=REDACTED");
    const std::string text = file_text(path);
    CHECK(text.find("s3cret") == std::string::npos);
    CHECK(text.find(admin_token) == std::string::npos);
}

TEST_CASE("access log and debug log: Authorization and X-Megaphone-Token are never written") {
    const std::string admin_token = "adm1n-header-s3cret";
    const std::string publish_key = "publish-header-s3cret-0123456789";
    const std::string metrics_token = "metrics-header-s3cret";
    const std::string path = std::string(MEGAPHONE_BINARY_DIR) + "/test-access-headers.log";
    const std::string err_path = std::string(MEGAPHONE_BINARY_DIR) + "/test-access-headers.err";
    std::filesystem::remove(path);
    auto options = test_options();
    options.log.access_log = path;
    options.log.level = megaphone::log_level::debug; // every line the server can write
    options.admin_token = admin_token;
    options.keys.publish_key = publish_key;
    options.keys.metrics_token = metrics_token;
    std::size_t requests = 0;
    {
        const stderr_to_file capture{err_path};
        std::optional<test_server> srv;
        srv.emplace(options);
        http_client c{srv->port()};
        // Each request with one credential header; the status it got.
        const auto with = [&](http::verb method, std::string_view target, std::string_view name,
                              const std::string& value, std::string body = {}) {
            ++requests;
            return c.request(method, target, std::move(body), {{name, value}}).status;
        };
        const auto get = http::verb::get;
        const auto post = http::verb::post;
        // X-Megaphone-Token: the dashboard's data, right and wrong.
        CHECK(with(get, "/admin/sessions", "X-Megaphone-Token", admin_token) == 200);
        CHECK(with(get, "/admin/sessions", "X-Megaphone-Token", "wrong-admin-s3cret") == 403);
        CHECK(with(post, "/admin/comet", "X-Megaphone-Token", admin_token, R"({"rid":1000})") ==
              200);
        // Authorization: publishing and metrics on the public port, right and wrong; and a
        // session creation carrying one (given to the application, never logged).
        CHECK(with(post, "/publish/news", "Authorization", "Bearer " + publish_key, "{}") == 200);
        CHECK(with(post, "/publish/news", "Authorization", "Bearer wrong-publish-s3cret", "{}") ==
              401);
        CHECK(with(get, "/metrics", "Authorization", "Bearer " + metrics_token) == 200);
        CHECK(with(get, "/metrics", "Authorization", "Bearer wrong-metrics-s3cret") == 401);
        CHECK(with(post, "/comet", "Authorization", "Bearer session-s3cret", R"({"rid":2000})") ==
              200);
        srv.reset();
    }
    megaphone::set_log_level(megaphone::log_level::warn);
    const std::string log = file_text(path);
    const std::string err = file_text(err_path);
    CHECK(file_lines(path).size() == requests);
    // The capture worked: the debug lines are there (a session opened), the secrets are not.
    CHECK_THAT(err, Catch::Contains("session open"));
    for (const std::string& secret : {admin_token, publish_key, metrics_token})
        for (const std::string* where : {&log, &err}) {
            INFO(secret << " in " << (where == &log ? "the access log" : "stderr"));
            CHECK(where->find(secret) == std::string::npos);
        }
    CHECK(log.find("s3cret") == std::string::npos);
    CHECK(err.find("s3cret") == std::string::npos);
}
