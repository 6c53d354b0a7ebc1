// Checks on pre-rendered RFC 5322 messages (`send_request::raw`,
// `outbound::raw`), which are sent as given and so must already be what a
// transport can put on the wire.
#pragma once

#include <mailers/error.hpp>
#include <string>
#include <string_view>

namespace mailers::mime {

/// What the engine needs to know from a pre-rendered message's header.
struct raw_header_facts {
    std::string from;        ///< the From header's addr-spec
    std::string message_id;  ///< the Message-ID, without angle brackets
};

/// Refuses a message SMTP would corrupt or cannot carry: empty, a NUL, a
/// CR or LF that is not part of a CRLF pair. errc::invalid_argument with
/// `why` naming the offset.
error_code check_raw_lines(std::string_view raw, std::string& why);

/// check_raw_lines, then the header section: it must end with an empty
/// line and hold exactly one From field with one address and exactly one
/// Message-ID. Folded fields are unfolded before they are parsed.
error_code inspect_raw_message(std::string_view raw, raw_header_facts& facts, std::string& why);

}  // namespace mailers::mime
