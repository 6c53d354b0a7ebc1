// A pool: a named set of mailboxes that a send draws from, with its rotation policy.
#pragma once

#include <mailers/config.hpp>
#include <mailers/rotation_policy.hpp>
#include <string>
#include <vector>

namespace mailers {

struct pool_config {
    std::string id;                      ///< stable id, unique in the workspace
    std::vector<std::string> mailboxes;  ///< mailbox ids; order matters for round-robin
    rotation_policy policy;
    friend bool operator==(const pool_config&, const pool_config&) = default;
};

}  // namespace mailers
