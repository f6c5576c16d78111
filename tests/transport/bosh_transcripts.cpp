// Every client <body/> recorded against ejabberd and Prosody (shared/bosh/transcripts) goes
// through the BOSH decoder: the well-formed ones decode to the attributes they carry and to
// their payloads byte for byte, the malformed ones are bad-request. The servers' answers are
// read back with the same parser.
#include "transport/bosh_codec.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const fs::path transcripts_dir =
    fs::path(MEGAPHONE_SOURCE_DIR) / ".." / "shared" / "bosh" / "transcripts";

struct exchange_record {
    std::string file;
    std::string method; ///< POST, GET, OPTIONS
    std::string request;
    std::string answer; ///< the answer's body, empty when there was none
};

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

/// The text after the comment that starts at `from` and up to the next comment (or the end).
std::string block_after_comment(const std::string& text, std::size_t from) {
    const auto comment_end = text.find("-->\n", from);
    if (comment_end == std::string::npos)
        return {};
    const auto start = comment_end + 4;
    auto end = text.find("\n<!--", start);
    if (end == std::string::npos)
        end = text.size();
    std::string block = text.substr(start, end - start);
    while (!block.empty() && (block.back() == '\n' || block.back() == '\r'))
        block.pop_back();
    if (block.rfind("<!-- (empty", 0) == 0)
        block.clear();
    return block;
}

std::vector<exchange_record> load_transcripts() {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(transcripts_dir)) {
        if (entry.path().extension() == ".xml")
            files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    std::vector<exchange_record> out;
    for (const auto& file : files) {
        const std::string text = read_file(file);
        std::size_t pos = 0;
        while ((pos = text.find("<!-- C->S", pos)) != std::string::npos) {
            exchange_record r;
            r.file = file.filename().string();
            const auto line = text.find('\n', pos) + 1;
            r.method = text.substr(line, text.find(' ', line) - line);
            r.request = block_after_comment(text, pos);
            const auto answer = text.find("<!-- S->C", pos);
            if (answer != std::string::npos)
                r.answer = block_after_comment(text, answer);
            out.push_back(std::move(r));
            pos = answer == std::string::npos ? text.size() : answer;
        }
    }
    return out;
}

/// The attributes of the first start tag, as written (the transcripts quote with ').
std::vector<std::pair<std::string, std::string>> start_tag_attributes(const std::string& xml) {
    const std::string tag = xml.substr(0, xml.find('>'));
    static const std::regex attribute(R"(([A-Za-z_][\w:.-]*)='([^']*)')");
    std::vector<std::pair<std::string, std::string>> out;
    for (auto it = std::sregex_iterator(tag.begin(), tag.end(), attribute);
         it != std::sregex_iterator(); ++it)
        out.emplace_back((*it)[1], (*it)[2]);
    return out;
}

std::optional<std::string> find(const std::vector<std::pair<std::string, std::string>>& attrs,
                                std::string_view name) {
    for (const auto& [n, v] : attrs) {
        if (n == name)
            return v;
    }
    return std::nullopt;
}

/// What a reader of the XEP expects of a recorded request, decided without our parser.
bool expected_malformed(const std::string& body,
                        const std::vector<std::pair<std::string, std::string>>& attrs) {
    if (body.rfind("<body ", 0) != 0)
        return true; // empty, not XML, or another root
    if (find(attrs, "xmlns") != "http://jabber.org/protocol/httpbind")
        return true;
    if (!find(attrs, "rid"))
        return true;
    // The two recorded well-formedness errors: an unclosed and a mismatched element.
    return body.find("<message></body>") != std::string::npos ||
           body.find("<body>oops</message>") != std::string::npos;
}

std::optional<std::uint32_t> number(const std::optional<std::string>& v) {
    if (!v)
        return std::nullopt;
    return static_cast<std::uint32_t>(std::stoul(*v));
}

/// A payload is standalone when it parses inside a <body/> that declares nothing it could use.
bool standalone(const std::string& payload) {
    auto result = megaphone::parse_bosh_body(
        "<_b:body xmlns:_b='http://jabber.org/protocol/httpbind'>" + payload + "</_b:body>");
    const auto* b = std::get_if<megaphone::bosh_body>(&result);
    return b && b->payloads.size() == 1 && b->payloads[0] == payload;
}

} // namespace

TEST_CASE("bosh transcripts: every recorded client request decodes as the XEP says") {
    if (!fs::is_directory(transcripts_dir)) {
        WARN("no transcripts at " << transcripts_dir.string() << ": skipped");
        return;
    }
    const auto records = load_transcripts();
    std::map<std::string, int> decoded, refused;
    for (const auto& r : records) {
        if (r.method != "POST")
            continue; // GET and OPTIONS carry no <body/>
        INFO(r.file << ": " << r.request);
        const auto attrs = start_tag_attributes(r.request);
        const auto result = megaphone::decode_bosh_request(r.request);
        const std::string server = r.file.substr(0, r.file.find('-'));
        if (expected_malformed(r.request, attrs)) {
            REQUIRE(std::holds_alternative<megaphone::protocol_error>(result));
            CHECK(std::get<megaphone::protocol_error>(result) ==
                  megaphone::protocol_error::bad_request);
            ++refused[server];
            continue;
        }
        REQUIRE(std::holds_alternative<megaphone::bosh_request>(result));
        const auto& req = std::get<megaphone::bosh_request>(result);
        ++decoded[server];

        CHECK(req.rid == std::stoull(*find(attrs, "rid")));
        CHECK(req.sid == find(attrs, "sid").value_or(""));
        CHECK(req.terminate() == (find(attrs, "type") == "terminate"));
        CHECK(req.to == find(attrs, "to"));
        CHECK(req.lang == find(attrs, "xml:lang"));
        CHECK(req.ver == find(attrs, "ver"));
        CHECK(req.legacy() == !find(attrs, "ver"));
        CHECK(req.content == find(attrs, "content"));
        CHECK(req.wait == number(find(attrs, "wait")));
        CHECK(req.hold == number(find(attrs, "hold")));
        CHECK(req.pause == number(find(attrs, "pause")));
        CHECK_FALSE(req.key);
        CHECK_FALSE(req.newkey);
        const bool xbosh = find(attrs, "xmlns:xmpp") == "urn:xmpp:xbosh";
        CHECK(req.xmpp_version == (xbosh ? find(attrs, "xmpp:version") : std::nullopt));
        CHECK(req.restart == (xbosh && find(attrs, "xmpp:restart") == "true"));

        // Every recorded payload declares its own namespace: nothing is carried, so the
        // payloads are exactly the bytes between the start and end tags of <body/>.
        const auto open_end = r.request.find('>') + 1;
        const bool empty_element = r.request[open_end - 2] == '/';
        const std::string inner =
            empty_element ? "" : r.request.substr(open_end, r.request.size() - open_end - 7);
        std::string joined;
        for (const auto& p : req.payloads) {
            CHECK(standalone(p));
            joined += p;
        }
        CHECK(joined == inner);
        CHECK(req.poll() == inner.empty());

        const auto neutral = megaphone::to_client_request(req);
        CHECK(neutral.messages.size() == req.payloads.size());
        CHECK(neutral.terminate == req.terminate());
    }
    // Both servers' scenarios were all seen: creation, SASL, restart, bind, messages, polls,
    // pauses, terminates; and the refusals: not XML, unclosed and mismatched elements, a root
    // other than <body/>, a <body/> in no namespace, a missing rid, an empty POST.
    for (const char* server : {"ejabberd", "prosody"}) {
        INFO(server);
        CHECK(decoded[server] >= 90);
        CHECK(refused[server] == 8);
    }
}

TEST_CASE("bosh transcripts: the servers' answers read back, payloads standalone") {
    if (!fs::is_directory(transcripts_dir)) {
        WARN("no transcripts at " << transcripts_dir.string() << ": skipped");
        return;
    }
    int answers = 0, with_stream_prefix = 0;
    for (const auto& r : load_transcripts()) {
        if (r.answer.rfind("<body", 0) != 0)
            continue;
        INFO(r.file << ": " << r.answer);
        const auto attrs = start_tag_attributes(r.answer);
        std::vector<std::string> names;
        for (const auto& a : attrs)
            names.push_back(a.first);
        std::sort(names.begin(), names.end());
        const bool duplicated = std::adjacent_find(names.begin(), names.end()) != names.end();
        const auto result = megaphone::parse_bosh_body(r.answer);
        if (duplicated) {
            // ejabberd declares xmlns:stream twice on its remote-stream-error answer: not
            // well-formed XML, refused like any other.
            CHECK(std::holds_alternative<megaphone::protocol_error>(result));
            continue;
        }
        REQUIRE(std::holds_alternative<megaphone::bosh_body>(result));
        const auto& body = std::get<megaphone::bosh_body>(result);
        ++answers;
        for (const auto& [name, value] : attrs) {
            if (name.rfind("xmlns", 0) == 0 || name.find(':') != std::string::npos)
                continue;
            CHECK(body.attribute(name) != nullptr);
            CHECK(*body.attribute(name) == value);
        }
        for (const auto& p : body.payloads) {
            CHECK(standalone(p));
            if (p.rfind("<stream:", 0) == 0) {
                ++with_stream_prefix;
                CHECK(p.find("xmlns:stream='http://etherx.jabber.org/streams'") !=
                      std::string::npos);
            }
        }
    }
    CHECK(answers >= 150);
    CHECK(with_stream_prefix >= 20); // stream features after creation and restart
}
