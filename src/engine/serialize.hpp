// JSON forms of configuration objects: what the store keeps and what the
// audit log records as before/after. Secrets never appear here.
#pragma once

#include <boost/system/result.hpp>
#include <mailers/campaign.hpp>
#include <mailers/engine.hpp>
#include <mailers/sequence.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace mailers::detail {

std::string to_json(const mailbox_config& m);
std::string to_json(const pool_config& p);
std::string to_json(const quota& q);
std::string to_json(const suppression_entry& e);

boost::system::result<mailbox_config> mailbox_from_json(std::string_view json);
boost::system::result<pool_config> pool_from_json(std::string_view json);
boost::system::result<quota> quota_from_json(std::string_view json);

std::string quota_object_id(quota_scope scope, std::string_view key);
std::string pause_object_id(const pause_target& t);
/// The scope to_string(pause_scope) names, or nullopt.
std::optional<pause_scope> pause_scope_named(std::string_view name);
std::string to_json(const pause_info& p);
/// The definition as stored; reading it back does not validate it
/// (`sequence::compile` does).
std::string to_json(const sequence_config& s);
boost::system::result<sequence_config> sequence_config_from_json(std::string_view json);
boost::system::result<pause_info> pause_from_json(std::string_view json);
/// A stored provider (its DSN holds references only, never a secret);
/// `active` is the engine's own and is not stored.
std::string to_json(const stored_provider& p);
boost::system::result<stored_provider> stored_provider_from_json(std::string_view json);
/// A started campaign (object "campaign"), without its recipients.
std::string to_json(const campaign_info& c);
boost::system::result<campaign_info> campaign_info_from_json(std::string_view json);

/// The workspace's suppression settings (object "settings"/"suppression"):
/// the folding rules its entries were normalised with, and the version of
/// the normaliser that made the keys.
/// The version of the normaliser this build makes keys with. Raised whenever
/// normalise_address or normalise_domain gives a different key for some
/// input than before (2: address literals in canonical form, local parts in
/// NFC).
inline constexpr int current_normaliser = 2;

struct suppression_settings {
    int normaliser = 0;
    suppression_options options;
    friend bool operator==(const suppression_settings&, const suppression_settings&) = default;
};
std::string to_json(const suppression_settings& s);
boost::system::result<suppression_settings> suppression_settings_from_json(std::string_view json);

// --- soft bounces and pause rules (rules.cpp)

/// Object "rule"/<id>.
std::string to_json(const pause_rule& r);
boost::system::result<pause_rule> pause_rule_from_json(std::string_view json);
/// Object "settings"/"soft_bounces".
std::string to_json(const soft_bounce_policy& p);
boost::system::result<soft_bounce_policy> soft_bounce_policy_from_json(std::string_view json);
/// Object "rule.resume"/<pause object id>: the last manual resume of a
/// target, which starts the rules' grace; `generation` counts the resumes,
/// so a rule fires at most once between two of them.
struct resume_mark {
    time_point at{};
    std::string actor;
    std::string reason;
    std::uint64_t generation = 0;
};
std::string to_json(const resume_mark& m);
boost::system::result<resume_mark> resume_mark_from_json(std::string_view json);
/// The scope to_string(rule_metric) names, or nullopt.
std::optional<rule_metric> rule_metric_named(std::string_view name);

}  // namespace mailers::detail
