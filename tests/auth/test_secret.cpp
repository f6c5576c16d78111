// constant_time_equal compares bytes, whatever their lengths; read_secret_file reads a whole
// file, trims its trailing newlines only, and refuses an empty file, a file that is not a
// regular one, one too large, and one others may read or write or its group may write.
#include "tests/auth/token_kit.hpp"

#include "auth/secret.hpp"

#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <system_error>

using namespace megaphone::auth;
using megaphone::test::scratch_dir;
namespace fs = std::filesystem;
using namespace std::string_literals;

namespace {

/// Writes `content` to a fresh file of the scratch directory with permissions `mode`.
fs::path secret_file(const std::string& name, const std::string& content, mode_t mode = 0600) {
    const fs::path path = scratch_dir() / name;
    fs::remove(path);
    std::ofstream(path, std::ios::binary) << content;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
    return path;
}

/// The secret read, or "error: <message>".
std::string outcome(const fs::path& path) {
    const auto r = read_secret_file(path);
    return r ? r.value() : "error: " + r.error().message();
}

} // namespace

TEST_CASE("constant_time_equal compares bytes, not lengths or prefixes", "[auth][secret]") {
    CHECK(constant_time_equal("key-1234", "key-1234"));
    CHECK(constant_time_equal("", ""));
    CHECK(constant_time_equal("a\0b"s, "a\0b"s));
    CHECK_FALSE(constant_time_equal("key-1234", "key-1235"));
    CHECK_FALSE(constant_time_equal("key-1234", "key-123"));
    CHECK_FALSE(constant_time_equal("key-123", "key-1234"));
    CHECK_FALSE(constant_time_equal("", "x"));
    CHECK_FALSE(constant_time_equal("a\0b"s, "a\0c"s));
    CHECK_FALSE(constant_time_equal("a\0"s, "a"));
}

TEST_CASE("read_secret_file reads the whole file and trims its trailing newlines only",
          "[auth][secret]") {
    CHECK(outcome(secret_file("plain", "s3cret")) == "s3cret");
    CHECK(outcome(secret_file("newline", "s3cret\n")) == "s3cret");
    CHECK(outcome(secret_file("newlines", "s3cret\n\n\n")) == "s3cret");
    CHECK(outcome(secret_file("crlf", "s3cret\r\n")) == "s3cret");
    CHECK(outcome(secret_file("inner", "line one\nline two\n")) == "line one\nline two");
    CHECK(outcome(secret_file("spaces", "  s3cret  \n")) == "  s3cret  ");
    CHECK(outcome(secret_file("binary", "a\0b\n"s)) == "a\0b"s);
}

TEST_CASE("read_secret_file refuses an empty file", "[auth][secret]") {
    for (const std::string content : {"", "\n", "\r\n\n"}) {
        const auto r = read_secret_file(secret_file("empty", content));
        REQUIRE_FALSE(r);
        CHECK(r.error() == secret_file_error::empty);
    }
}

TEST_CASE("read_secret_file refuses a file others may read or its group may write",
          "[auth][secret]") {
    for (const mode_t mode : {0644, 0604, 0606, 0601, 0620, 0660, 0666}) {
        INFO(std::oct << mode);
        const auto r = read_secret_file(secret_file("loose", "s3cret", mode));
        REQUIRE_FALSE(r);
        CHECK(r.error() == secret_file_error::loose_permissions);
    }
    CHECK_THAT(outcome(secret_file("loose", "s3cret", 0644)), Catch::Contains("chmod 600"));
    // Owner only, or owner and group reading (root:megaphone 0640).
    for (const mode_t mode : {0600, 0400, 0640, 0440, 0700}) {
        INFO(std::oct << mode);
        CHECK(outcome(secret_file("tight", "s3cret", mode)) == "s3cret");
    }
}

TEST_CASE("read_secret_file refuses what is not a regular file of a secret's size",
          "[auth][secret]") {
    const auto missing = read_secret_file(scratch_dir() / "no-such-file");
    REQUIRE_FALSE(missing);
    CHECK(missing.error() == std::errc::no_such_file_or_directory);

    const fs::path dir = scratch_dir() / "a-directory";
    fs::create_directories(dir);
    REQUIRE(::chmod(dir.c_str(), 0700) == 0);
    const auto directory = read_secret_file(dir);
    REQUIRE_FALSE(directory);
    CHECK(directory.error() == secret_file_error::not_a_file);

    // A FIFO with no writer: refused at once, not waited on.
    const fs::path fifo = scratch_dir() / "a-fifo";
    fs::remove(fifo);
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const auto pipe = read_secret_file(fifo);
    REQUIRE_FALSE(pipe);
    CHECK(pipe.error() == secret_file_error::not_a_file);

    const auto at_limit =
        read_secret_file(secret_file("at-limit", std::string(max_secret_file_size, 'k')));
    CHECK(at_limit);
    const auto too_large =
        read_secret_file(secret_file("too-large", std::string(max_secret_file_size + 1, 'k')));
    REQUIRE_FALSE(too_large);
    CHECK(too_large.error() == secret_file_error::too_large);
    CHECK(too_large.error().category().name() == std::string("megaphone.auth.secret_file"));
}
