// The workspace's erasure key and the entry an erased address keeps, for
// the engine and for the point lookup (suppression_lookup.cpp), which must
// reach the same answer without an engine. The design is in docs/privacy.md.
#pragma once

#include <mailers/suppression.hpp>
#include <string>
#include <string_view>

namespace mailers::detail {

/// The key erased addresses are hashed under, from the workspace's
/// "settings"/"erasure" object `json` and the host's key (`host_key`, ""
/// when the host gives none). "" with `why` set when they do not fit
/// together: the workspace keeps its own key and the host gave one, or the
/// hosts hold it and `host_key` is missing or another key.
std::string workspace_erasure_key(std::string_view json, std::string_view host_key,
                                  std::string& why);

/// The value of the entry that keeps `normalised` suppressed once erased,
/// under `key` and the folding rules `rules` ("erased:" and 64 hex digits).
std::string erased_entry_value(std::string_view key, const suppression_options& rules,
                               std::string_view normalised);

}  // namespace mailers::detail
