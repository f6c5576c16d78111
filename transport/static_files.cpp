#include "transport/static_files.hpp"

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

namespace megaphone {

namespace {

content_kind kind_of(const std::filesystem::path& p) {
    const auto ext = p.extension().string();
    if (ext == ".html" || ext == ".htm")
        return content_kind::html;
    if (ext == ".js" || ext == ".mjs")
        return content_kind::javascript;
    if (ext == ".css")
        return content_kind::css;
    if (ext == ".json")
        return content_kind::json;
    if (ext == ".svg")
        return content_kind::svg;
    if (ext == ".png")
        return content_kind::png;
    if (ext == ".xml")
        return content_kind::xml;
    if (ext == ".txt" || ext == ".md")
        return content_kind::text;
    return content_kind::binary;
}

response not_found() {
    return {404, content_kind::text, packet::from("not found\n")};
}

int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

} // namespace

std::optional<std::string> percent_decode(std::string_view path) {
    std::string out;
    out.reserve(path.size());
    for (std::size_t i = 0; i < path.size(); ++i) {
        char c = path[i];
        if (c == '%') {
            if (i + 2 >= path.size())
                return std::nullopt;
            const int hi = hex_value(path[i + 1]), lo = hex_value(path[i + 2]);
            if (hi < 0 || lo < 0)
                return std::nullopt;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0')
            return std::nullopt;
        out += c;
    }
    return out;
}

static_files::static_files(const std::filesystem::path& root)
    : root_{std::filesystem::canonical(root)} {}

response static_files::get(std::string_view target) const {
    target = target.substr(0, target.find_first_of("?#"));
    auto decoded = percent_decode(target);
    if (!decoded || decoded->empty() || decoded->front() != '/')
        return not_found();
    std::string relative = decoded->substr(1);
    if (relative.empty() || relative.back() == '/')
        relative += "index.html";

    // Refuse any `..` segment and any backslash outright, then check the resolved path too
    // (a symlink inside the root may point out of it).
    const std::filesystem::path rel{relative};
    if (rel.is_absolute() || relative.find('\\') != std::string::npos)
        return not_found();
    for (const auto& part : rel)
        if (part == "..")
            return not_found();
    std::error_code ec;
    const auto full = std::filesystem::canonical(root_ / rel, ec);
    if (ec || !std::filesystem::is_regular_file(full, ec))
        return not_found();
    auto [end, _] = std::mismatch(root_.begin(), root_.end(), full.begin(), full.end());
    if (end != root_.end())
        return not_found();

    std::ifstream file{full, std::ios::binary};
    if (!file)
        return not_found();
    std::ostringstream bytes;
    bytes << file.rdbuf();
    return {200, kind_of(full), packet::from(bytes.str())};
}

} // namespace megaphone
