// XML escaping shared by everything that writes XML (the BOSH codec, the XMPP example).
#pragma once

#include <string>
#include <string_view>

namespace megaphone {

/// Appends `value` escaped for an attribute in single or double quotes. Tabs and line ends
/// become character references so that attribute-value normalization gives them back unchanged.
void xml_escape_attribute(std::string& out, std::string_view value);

/// Appends `text` escaped as character data.
void xml_escape_text(std::string& out, std::string_view text);

} // namespace megaphone
