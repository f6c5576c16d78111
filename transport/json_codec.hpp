// The JSON transport's codec (docs/PROTOCOL.md): request bodies in, answer bodies out.
#pragma once

#include "transport/protocol.hpp"

#include <optional>
#include <string_view>
#include <variant>

namespace megaphone {

/// Nesting deeper than this is refused as bad-request before parsing (bounded stack and work).
inline constexpr int json_max_depth = 64;

/// A recovery cursor holds at most this many channels, and an epoch at most this many bytes.
inline constexpr std::size_t max_recover_channels = 256;
inline constexpr std::size_t max_epoch_size = 64;

/// {"epoch": "E", "offset": K} (either may be absent: "" and 0); nullopt when ill-typed, the
/// offset negative or above 2^53 - 1, or the epoch longer than max_epoch_size.
std::optional<stream_position> decode_stream_position(const nlohmann::json& cursor);

/// Decodes a request body; an error is always bad_request.
std::variant<client_request, protocol_error> decode_json_request(std::string_view body);
/// The same decoder without its fast path for the common shapes (nlohmann's parser for every
/// body): decode_json_request() must give exactly its results (tests and fuzz compare them).
std::variant<client_request, protocol_error> decode_json_request_general(std::string_view body);

class json_codec final : public session_codec {
public:
    content_kind kind() const noexcept override { return content_kind::json; }
    packet created(const session_info& info, request_id rid,
                   std::span<const packet> packets) const override;
    packet data(request_id rid, std::span<const packet> packets) const override;
    packet closing(request_id rid, close_reason why) const override;
    packet terminated(request_id rid) const override;
    packet replaced(request_id rid) const override;
    packet error(protocol_error e) const override;
    packet encode(const nlohmann::json& value) const override;

    static const json_codec& instance();
};

} // namespace megaphone
