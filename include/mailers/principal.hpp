// Who acts, and the hook that decides whether they may.
#pragma once

#include <functional>
#include <mailers/config.hpp>
#include <string>
#include <string_view>

namespace mailers {

/// The acting identity on every mutating call: a user, an API key, a
/// service, or the engine itself (`principal::system()` for automatic
/// actions such as suppressing a hard bounce).
struct principal {
    std::string id;            ///< stable id, recorded in the audit log
    std::string display_name;  ///< for people reading the log

    static principal system() { return {"system", "mailers"}; }
    friend bool operator==(const principal&, const principal&) = default;
};

/// What is being done to which resource, for the authorizer.
struct access_request {
    std::string_view action;         ///< e.g. "mailbox.upsert", "suppression.remove", "send"
    std::string_view resource_type;  ///< "mailbox", "pool", "suppression", "workspace", ...
    std::string_view resource_id;
};

/// Returns true to allow. Called on the caller's thread before any change;
/// must be thread-safe. The default allows everything.
using authorizer = std::function<bool(const principal&, const access_request&)>;

}  // namespace mailers
