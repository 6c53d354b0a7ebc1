// HTML escaping for text placed in element content or a quoted attribute.
#pragma once

#include <string>
#include <string_view>

namespace mailers::tpl {

/// Appends `v` with &, <, >, " and ' written as entities.
void append_html_escaped(std::string& out, std::string_view v);

}  // namespace mailers::tpl
