#include "transport/xml_escape.hpp"

namespace megaphone {

/// Escapes an attribute value for single or double quotes. Tabs and line ends become character
/// references so that attribute-value normalization gives them back unchanged.
void xml_escape_attribute(std::string& out, std::string_view value) {
    for (char c : value) {
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '\'':
            out += "&apos;";
            break;
        case '"':
            out += "&quot;";
            break;
        case '\t':
            out += "&#9;";
            break;
        case '\n':
            out += "&#10;";
            break;
        case '\r':
            out += "&#13;";
            break;
        default:
            out += c;
        }
    }
}

void xml_escape_text(std::string& out, std::string_view text) {
    for (char c : text) {
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>': // "]]>" is not allowed in character data
            out += "&gt;";
            break;
        case '\r': // would be normalized to '\n' otherwise
            out += "&#13;";
            break;
        default:
            out += c;
        }
    }
}

} // namespace megaphone
