// Whether one address is suppressed, read from the store with a few point
// queries instead of through an engine. An engine answers from its
// in-memory index, which it fills with every entry of the workspace when it
// starts: right for a process that checks every send, and seconds of start
// on a workspace of millions of entries for one that asks once and exits
// (`mailers suppression check`).
#pragma once

#include <mailers/config.hpp>
#include <mailers/suppression.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace mailers {

class store;

/// What `lookup_suppression` found.
struct suppression_lookup {
    /// The address normalised under the workspace's folding rules.
    std::string key;
    /// As `engine::is_suppressed` answers: an address entry, a domain entry
    /// for its domain or a parent domain, or the entry an erasure left. When
    /// the workspace holds erased entries and no erasure key is known (the
    /// hosts hold it and `erasure_key` was not given), every address is
    /// suppressed, as an engine without the key refuses every send.
    bool suppressed = false;
    /// As `engine::find_suppression` returns it: the address entry, else the
    /// most specific domain entry, else the erased entry; nullopt when not
    /// suppressed or when the entry cannot be named (no erasure key).
    std::optional<suppression_entry> entry;
};

/// Looks `address` up in `workspace`'s suppressions in `st`: two object
/// reads, one query for the address, one per label of its domain and one
/// probe for erased entries, each from an index, however large the list.
/// `erasure_key` is the key the workspace's hosts hold, as
/// `engine_params::erasure_key` takes it (the key, env:NAME or file:PATH);
/// "" when the workspace keeps its own or has none.
///
/// Returns nullopt when only an engine can answer: the workspace holds no
/// suppression settings of this version's normaliser (no engine of this
/// version has started on it; one would re-key the stored entries first),
/// or a stored address value that begins "erased:" but is not an erased
/// entry stands where the probe looks. Each query reads the committed state
/// when it runs; a change committed meanwhile may show in some and not in
/// others, as it reaches engines at slightly different times.
///
/// Throws `exception` with errc::invalid_address when `address` is not an
/// address, and errc::invalid_argument when `erasure_key` does not fit the
/// workspace (as an engine given it fails to start), or cannot be read.
MAILERS_API std::optional<suppression_lookup> lookup_suppression(store& st,
                                                                 std::string_view workspace,
                                                                 std::string_view address,
                                                                 std::string_view erasure_key = {});

}  // namespace mailers
