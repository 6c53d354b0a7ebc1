// Role-based access control: who may do what to which resource.
//
// A role is a set of permissions; a grant gives one principal one role over
// a scope: the whole workspace, one pool (the pool, its member mailboxes and
// sends through it), one mailbox, one provider (the provider and the
// mailboxes that send through it) or one sequence. Once a workspace turns it
// on, everything not granted is refused; until then the host's `authorizer`
// alone decides (allow-all by default), and it keeps deciding after: a
// request must pass both.
//
// Roles, grants and the on/off switch are stored in the workspace, so every
// process enforces the same ones, and every change is audited. Only a
// principal granted `manage_access` over the whole workspace changes them,
// and turning access control on needs such a grant to exist, so a
// workspace cannot lock everyone out by mistake.
//
// `decide_access` is the pure decision; the engine calls it with what it
// knows of pools and mailboxes.
#pragma once

#include <boost/system/result.hpp>
#include <cstdint>
#include <functional>
#include <mailers/config.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

enum class permission : std::uint8_t {
    send,                ///< send through a pool or mailbox
    enqueue,             ///< queue sends, enroll contacts
    pause,               ///< pause a scope
    resume,              ///< resume a scope
    override_cap,        ///< set or remove a quota
    suppression_add,     ///< suppress, import suppressions
    suppression_remove,  ///< lift a suppression
    manage_providers,    ///< add, save and remove providers (their DSNs and secret references)
    manage_mailboxes,    ///< add, change, retire mailboxes
    manage_pools,        ///< add, change, remove pools
    manage_sequences,    ///< add, change, remove sequences
    read_audit,          ///< read the audit log
    export_data,         ///< export what is held about a person
    erase_person,        ///< erase a person's data
    manage_webhooks,     ///< outbound webhook endpoints
    manage_access,       ///< roles, grants, and turning access control on or off
};

inline constexpr std::size_t permission_count = 16;

MAILERS_API std::string_view to_string(permission p) noexcept;
/// The inverse of to_string(); errc::invalid_argument otherwise.
MAILERS_API boost::system::result<permission> parse_permission(std::string_view s);

/// What a grant covers.
struct access_scope {
    enum class kind : std::uint8_t { workspace, pool, mailbox, provider, sequence };
    kind of = kind::workspace;
    std::string id;  ///< empty for the workspace
    friend bool operator==(const access_scope&, const access_scope&) = default;
};

MAILERS_API std::string_view to_string(access_scope::kind k) noexcept;

struct role {
    std::string id;  ///< 1 to 128 of A-Z a-z 0-9 . _ - :
    std::vector<permission> permissions;
    friend bool operator==(const role&, const role&) = default;
};

struct access_grant {
    std::string principal;  ///< principal id
    std::string role;
    access_scope scope;
    friend bool operator==(const access_grant&, const access_grant&) = default;
};

/// A workspace's roles, grants and switch, as the engine holds them.
struct access_policy {
    bool enabled = false;
    std::vector<role> roles;
    std::vector<access_grant> grants;
};

/// The resource a request acts on, and what the scope check needs to know
/// about it: for a mailbox, its pools and provider; for a send through a
/// pool, the pool.
struct access_target {
    access_scope::kind of = access_scope::kind::workspace;
    std::string id;
    std::vector<std::string> pools;  ///< mailbox: the pools it is a member of
    std::string provider;            ///< mailbox: its provider
};

struct access_decision {
    bool allowed = false;
    /// Refused: "principal 'bob' lacks send on pool 'emea'"; allowed: the
    /// grant that allowed it ("role 'sdr' over pool 'emea'").
    std::string reason;
};

/// Whether `principal` holds `p` over `target` in `policy` (whatever
/// `policy.enabled` says: the caller decides whether it applies). A grant
/// over the workspace covers everything; over a pool, the pool and the
/// mailboxes in it; over a provider, the provider and the mailboxes on it;
/// over a mailbox or sequence, that one. `manage_access` counts only over
/// the workspace.
MAILERS_API access_decision decide_access(const access_policy& policy, std::string_view principal,
                                          permission p, const access_target& target);

/// The permission an engine action needs ("send", "pool.upsert",
/// "suppression.remove", ...); nullopt for an action no permission names.
MAILERS_API std::optional<permission> permission_for_action(std::string_view action) noexcept;

}  // namespace mailers
