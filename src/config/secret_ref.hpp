// Secrets given by reference ("env:NAME", "file:PATH") rather than inline,
// so that they stay out of configuration files and command lines. Shared by
// DSN parsing and the PostgreSQL store's conninfo.
#pragma once

#include <string>
#include <string_view>

namespace mailers::detail {

/// Resolves `value` in place when it is a reference; other values are left
/// as they are. On failure returns false and sets `error`, which starts with
/// `what` ("DSN password") and names the reference, never the secret.
bool resolve_value(std::string& value, std::string_view what, std::string& error);

}  // namespace mailers::detail
