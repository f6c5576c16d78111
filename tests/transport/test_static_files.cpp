// static_files: percent_decode, and get() on a temporary tree with files, a subdirectory with an
// index.html, and symlinks leading in and out of the root.
#include "transport/static_files.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

using megaphone::content_kind;
using megaphone::percent_decode;
using megaphone::static_files;
namespace fs = std::filesystem;

namespace {

struct temp_tree {
    fs::path base;
    temp_tree() {
        std::string templ = (fs::temp_directory_path() / "megaphone-sf-XXXXXX").string();
        REQUIRE(::mkdtemp(templ.data()) != nullptr);
        base = fs::canonical(templ);
    }
    ~temp_tree() {
        std::error_code ec;
        fs::remove_all(base, ec);
    }
    temp_tree(const temp_tree&) = delete;
    temp_tree& operator=(const temp_tree&) = delete;

    void write(const fs::path& rel, const std::string& content) const {
        fs::create_directories((base / rel).parent_path());
        std::ofstream{base / rel, std::ios::binary} << content;
    }
};

/// A tree: www/ is the root, outside/ is next to it.
struct site : temp_tree {
    site() {
        write("www/index.html", "<h1>home</h1>");
        write("www/app.js", "js");
        write("www/mod.mjs", "mjs");
        write("www/style.css", "css");
        write("www/data.json", "{}");
        write("www/logo.svg", "<svg/>");
        write("www/logo.png", std::string("\x89PNG\r\n\x1a\n\0", 9));
        write("www/feed.xml", "<feed/>");
        write("www/notes.txt", "notes");
        write("www/README.md", "# readme");
        write("www/old.htm", "old");
        write("www/blob.bin", "bin");
        write("www/noext", "noext");
        write("www/a b.txt", "space");
        write("www/sub/index.html", "<h1>sub</h1>");
        write("www/sub/page.txt", "page");
        write("www/empty/.keep", "");
        write("outside/secret.txt", "TOP-SECRET");
        write("www-evil/x.txt", "sibling");
        fs::create_symlink(base / "outside/secret.txt", base / "www/escape.txt");
        fs::create_symlink("../outside/secret.txt", base / "www/relescape.txt");
        fs::create_directory_symlink(base / "outside", base / "www/escdir");
        fs::create_symlink(base / "www/sub/page.txt", base / "www/inside.txt");
    }
    fs::path root() const { return base / "www"; }
};

} // namespace

TEST_CASE("static files: percent_decode") {
    struct decode_case {
        std::string in;
        std::optional<std::string> out;
    };
    const auto c = GENERATE(values<decode_case>({
        {"", std::string()},
        {"/plain/path.txt", std::string("/plain/path.txt")},
        {"/a%20b", std::string("/a b")},
        {"/%41%42%43", std::string("/ABC")},
        {"%2e%2e", std::string("..")},
        {"%2E%2E%2F", std::string("../")},
        {"%2f", std::string("/")},
        {"%5c", std::string("\\")},
        {"abc%41", std::string("abcA")},
        {"%c3%a9", std::string("\xc3\xa9")},
        {"a+b", std::string("a+b")}, // a path: '+' is not a space
        {"%25", std::string("%")},
        {"%2541", std::string("%41")}, // decoded once only
        {"%", std::nullopt},
        {"%2", std::nullopt},
        {"/x%2", std::nullopt},
        {"%zz", std::nullopt},
        {"%g0", std::nullopt},
        {"%0g", std::nullopt},
        {"%00", std::nullopt},
        {"/a%00.html", std::nullopt},
        {std::string("/a\0b", 4), std::nullopt},
    }));
    DYNAMIC_SECTION("'" << c.in << "'") {
        CHECK(percent_decode(c.in) == c.out);
    }
}

TEST_CASE("static files: files are served with their content type") {
    site s;
    const static_files files{s.root()};
    CHECK(files.root() == fs::canonical(s.root()));

    struct served {
        std::string target, body;
        content_kind kind;
    };
    const auto c = GENERATE(values<served>({
        {"/", "<h1>home</h1>", content_kind::html},
        {"/index.html", "<h1>home</h1>", content_kind::html},
        {"/old.htm", "old", content_kind::html},
        {"/app.js", "js", content_kind::javascript},
        {"/mod.mjs", "mjs", content_kind::javascript},
        {"/style.css", "css", content_kind::css},
        {"/data.json", "{}", content_kind::json},
        {"/logo.svg", "<svg/>", content_kind::svg},
        {"/logo.png", std::string("\x89PNG\r\n\x1a\n\0", 9), content_kind::png},
        {"/feed.xml", "<feed/>", content_kind::xml},
        {"/notes.txt", "notes", content_kind::text},
        {"/README.md", "# readme", content_kind::text},
        {"/blob.bin", "bin", content_kind::binary},
        {"/noext", "noext", content_kind::binary},
        {"/a%20b.txt", "space", content_kind::text},
        {"/sub/", "<h1>sub</h1>", content_kind::html},
        {"/sub/index.html", "<h1>sub</h1>", content_kind::html},
        {"/sub/page.txt", "page", content_kind::text},
        {"/sub/%70age.txt", "page", content_kind::text},
        {"/./index.html", "<h1>home</h1>", content_kind::html},
        {"/sub//page.txt", "page", content_kind::text},
        {"/inside.txt", "page", content_kind::text}, // a symlink that stays inside
        // Query strings and fragments are not part of the path.
        {"/app.js?v=3", "js", content_kind::javascript},
        {"/app.js?v=../../etc/passwd", "js", content_kind::javascript},
        {"/?x=1", "<h1>home</h1>", content_kind::html},
        {"/style.css#top", "css", content_kind::css},
        {"/sub/?a=b#c", "<h1>sub</h1>", content_kind::html},
    }));
    DYNAMIC_SECTION(c.target) {
        const auto r = files.get(c.target);
        CHECK(r.status == 200);
        CHECK(r.kind == c.kind);
        CHECK(r.body.view() == c.body);
    }
}

TEST_CASE("static files: anything missing, a directory, or outside the root is 404") {
    site s;
    const static_files files{s.root()};
    // The tree is new on every run: "{ABS}" stands for the secret's absolute path without its
    // leading slash.
    const auto pattern = GENERATE(values<std::string>({
        // Missing, directories.
        "/missing.html",
        "/sub",
        "/empty/",
        "/sub/missing/",
        // Not a path.
        "",
        "index.html",
        "*",
        "?x=/index.html",
        "http://example.com/index.html",
        // Traversal, plain and encoded.
        "/..",
        "/../outside/secret.txt",
        "/sub/../../outside/secret.txt",
        "/sub/../index.html", // even when it would stay inside: no `..` at all
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E/outside/secret.txt",
        "/.%2e/outside/secret.txt",
        "/%2e./outside/secret.txt",
        "/%2e%2e%2foutside%2fsecret.txt",
        "/sub%2f..%2f..%2foutside%2fsecret.txt",
        "/%252e%252e/outside/secret.txt", // double-encoded: a file named "%2e%2e", missing
        "/..%5coutside%5csecret.txt",
        "/sub/..\\..\\outside\\secret.txt",
        "/../www-evil/x.txt",
        "/%2e%2e/www-evil/x.txt",
        // Absolute paths.
        "//{ABS}",
        "/%2F{ABS}",
        "%2F{ABS}",
        "/{ABS}", // inside the root: a path that does not exist there
        // Symlinks leading out of the root.
        "/escape.txt",
        "/relescape.txt",
        "/escdir/secret.txt",
        "/escdir/",
        // NUL bytes, malformed escapes.
        "/index.html%00",
        "/sub/page.txt%00.html",
        "/index%2.html",
        "/index%zz.html",
        "/%",
    }));
    std::string target = pattern;
    if (auto at = target.find("{ABS}"); at != std::string::npos)
        target.replace(at, 5, (s.base / "outside/secret.txt").string().substr(1));
    DYNAMIC_SECTION("'" << target << "'") {
        const auto r = files.get(target);
        CHECK(r.status == 404);
        CHECK(r.body.view().find("TOP-SECRET") == std::string_view::npos);
        CHECK(r.body.view().find("sibling") == std::string_view::npos);
    }
}

TEST_CASE("static files: the root is resolved once, through symlinks") {
    site s;
    fs::create_directory_symlink(s.root(), s.base / "link-to-www");
    const static_files files{s.base / "link-to-www"};
    CHECK(files.root() == fs::canonical(s.root()));
    CHECK(files.get("/app.js").status == 200);
    CHECK(files.get("/escape.txt").status == 404);
    CHECK_THROWS(static_files{s.base / "no-such-dir"});
}
