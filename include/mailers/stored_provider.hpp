// A provider kept in the store: an id and a DSN whose secrets are named by
// reference, so that every process of a workspace builds the same transport
// from it with the secrets of its own environment (engine::save_provider).
#pragma once

#include <mailers/clock.hpp>
#include <string>

namespace mailers {

struct stored_provider {
    std::string id;
    /// As saved: credentials only as `env:NAME` / `file:/path` references
    /// (require_secret_references()), so it prints as it is.
    std::string dsn;
    time_point created_at{};
    time_point updated_at{};
    /// False when this engine sends through something else under this id:
    /// a transport the host registered with engine::add_provider (which
    /// takes precedence), or nothing because the DSN could not be built
    /// here (a reference that does not resolve in this process).
    bool active = false;
    friend bool operator==(const stored_provider&, const stored_provider&) = default;
};

}  // namespace mailers
