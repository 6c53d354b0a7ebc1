// Access decisions: every permission over every kind of target, allowed
// exactly where a grant covers it.
#include <doctest/doctest.h>

#include <mailers/access.hpp>
#include <random>
#include <string>
#include <vector>

using namespace mailers;
using k = access_scope::kind;

namespace {

std::vector<permission> all_permissions() {
    std::vector<permission> out;
    for (std::size_t i = 0; i < permission_count; ++i) out.push_back(static_cast<permission>(i));
    return out;
}

// The targets a test asks about: the workspace itself, pool emea and a
// mailbox in it on provider ses, a mailbox outside it on provider smtp,
// pool apac, provider ses, sequence q4.
std::vector<access_target> targets() {
    return {
        {k::workspace, "", {}, ""},
        {k::pool, "emea", {}, ""},
        {k::mailbox, "rep-emea", {"emea"}, "ses"},
        {k::mailbox, "rep-us", {"us"}, "smtp"},
        {k::pool, "apac", {}, ""},
        {k::provider, "ses", {}, ""},
        {k::sequence, "q4", {}, ""},
    };
}

// What a grant of a role holding `p` over `scope` should allow on `t`.
bool expected(const access_scope& scope, permission p, const access_target& t) {
    if (p == permission::manage_access) return scope.of == k::workspace;
    switch (scope.of) {
        case k::workspace:
            return true;
        case k::pool:
            return (t.of == k::pool && t.id == scope.id) ||
                   (t.of == k::mailbox && !t.pools.empty() && t.pools[0] == scope.id);
        case k::provider:
            return (t.of == k::provider && t.id == scope.id) ||
                   (t.of == k::mailbox && t.provider == scope.id);
        case k::mailbox:
        case k::sequence:
            return t.of == scope.of && t.id == scope.id;
    }
    return false;
}

}  // namespace

TEST_CASE("permission names round-trip, and actions map to permissions") {
    for (auto p : all_permissions()) {
        auto back = parse_permission(to_string(p));
        REQUIRE(back.has_value());
        CHECK(*back == p);
    }
    CHECK(!parse_permission("root").has_value());
    CHECK(permission_for_action("send") == permission::send);
    CHECK(permission_for_action("suppression.remove") == permission::suppression_remove);
    CHECK(permission_for_action("suppression.import") == permission::suppression_add);
    CHECK(permission_for_action("access.grant") == permission::manage_access);
    CHECK(permission_for_action("campaign.start") == permission::enqueue);
    CHECK(permission_for_action("campaign.cancel") == permission::enqueue);
    CHECK(!permission_for_action("launch.missiles").has_value());
}

TEST_CASE("the permission matrix: every permission over every scope and target") {
    const std::vector<access_scope> scopes = {
        {k::workspace, ""}, {k::pool, "emea"}, {k::mailbox, "rep-emea"},
        {k::provider, "ses"}, {k::sequence, "q4"}};
    std::size_t checked = 0;
    for (auto p : all_permissions())
        for (const auto& scope : scopes) {
            access_policy policy;
            policy.enabled = true;
            policy.roles = {{"r", {p}}, {"other", {}}};
            policy.grants = {{"alice", "r", scope}, {"bob", "other", {k::workspace, ""}}};
            for (const auto& t : targets()) {
                CAPTURE(to_string(p));
                CAPTURE(to_string(scope.of));
                CAPTURE(t.id);
                auto d = decide_access(policy, "alice", p, t);
                CHECK(d.allowed == expected(scope, p, t));
                CHECK(!d.reason.empty());
                // Nobody else gets anything from alice's grant, and the
                // role's permission is the only one it gives.
                CHECK(!decide_access(policy, "bob", p, t).allowed);
                CHECK(!decide_access(policy, "Alice", p, t).allowed);
                for (auto q : all_permissions())
                    if (q != p) CHECK(!decide_access(policy, "alice", q, t).allowed);
                ++checked;
            }
        }
    CHECK(checked == permission_count * 5 * 7);
}

TEST_CASE("a refusal names the principal, the permission and the resource") {
    access_policy policy;
    policy.enabled = true;
    auto d = decide_access(policy, "bob", permission::pause, {k::mailbox, "rep1", {}, ""});
    CHECK(!d.allowed);
    CHECK(d.reason == "principal 'bob' lacks pause on mailbox 'rep1'");
    policy.roles = {{"pauser", {permission::pause}}};
    policy.grants = {{"bob", "pauser", {k::pool, "emea"}}};
    d = decide_access(policy, "bob", permission::pause, {k::mailbox, "rep1", {"emea"}, ""});
    CHECK(d.allowed);
    CHECK(d.reason == "role 'pauser' over pool 'emea'");
    // A grant of a role that no longer exists gives nothing.
    policy.roles.clear();
    CHECK(!decide_access(policy, "bob", permission::pause, {k::mailbox, "rep1", {"emea"}, ""}).allowed);
}
