// JavaScript values to and from the engine's types. Field names are the
// C++ ones in camelCase; enums are their `to_string` names. Every reader
// throws a TypeError naming the field it could not read, before anything
// is sent to the engine.
#pragma once

#include <napi.h>

#include <mailers.hpp>
#include <mailers/postgres_store.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mailers_node {

/// What a failed operation reports: the error and what JS needs to build
/// the matching Error subclass (lib/errors.js).
struct failure_info {
    mailers::error_code ec;
    mailers::diagnostics diag;
    std::string message;  // overrides ec.message() when set
    std::optional<mailers::time_point> retry_at;
};

failure_info from_exception(std::exception_ptr e);
Napi::Object to_js(Napi::Env env, const failure_info& f);

Napi::Value to_js(Napi::Env env, mailers::time_point t);
Napi::Value to_js(Napi::Env env, const std::optional<mailers::time_point>& t);
Napi::Object to_js(Napi::Env env, const mailers::diagnostics& d);
Napi::Object to_js(Napi::Env env, const mailers::send_result& r);
Napi::Object to_js(Napi::Env env, const mailers::event& e);
Napi::Object to_js(Napi::Env env, const mailers::mailbox_config& m);
Napi::Object to_js(Napi::Env env, const mailers::mailbox_status& s);
Napi::Object to_js(Napi::Env env, const mailers::pool_config& p);
Napi::Object to_js(Napi::Env env, const mailers::quota& q);
Napi::Object to_js(Napi::Env env, const mailers::suppression_entry& e);
Napi::Object to_js(Napi::Env env, const mailers::pause_info& p);
Napi::Object to_js(Napi::Env env, const mailers::audit_record& r);
Napi::Object to_js(Napi::Env env, const mailers::audit_head& h);
Napi::Object to_js(Napi::Env env, const mailers::engine_stats& s);
Napi::Object to_js(Napi::Env env, const mailers::queued_send& q);
Napi::Object to_js(Napi::Env env, const mailers::queue_summary& q);
Napi::Object to_js(Napi::Env env, const mailers::ingest_result& r);
Napi::Object to_js(Napi::Env env, const mailers::unsubscribe_result& r);
Napi::Object to_js(Napi::Env env, const mailers::outbound& o);
Napi::Object to_js(Napi::Env env, const mailers::suppression_verify_report& r);

mailers::principal principal_from(const Napi::Value& v, const mailers::principal& fallback);
mailers::send_request send_request_from(const Napi::Value& v, const mailers::principal& actor);
mailers::enqueue_options enqueue_options_from(const Napi::Value& v);
mailers::mailbox_config mailbox_from(const Napi::Value& v);
mailers::pool_config pool_from(const Napi::Value& v);
mailers::quota quota_from(const Napi::Value& v);
mailers::quota_scope quota_scope_from(const Napi::Value& v);
mailers::pause_target pause_target_from(const Napi::Value& v);
mailers::suppression_kind suppression_kind_from(const Napi::Value& v);
mailers::suppression_reason suppression_reason_from(const Napi::Value& v);
mailers::role role_from(const Napi::Value& v);
mailers::access_grant grant_from(const Napi::Value& v);
mailers::webhook_provider webhook_provider_from(const Napi::Value& v);
mailers::webhook_params webhook_params_from(const Napi::Value& v);
mailers::audit_head audit_head_from(const Napi::Value& v);

/// Small readers shared with the engine wrapper.
std::string string_field(const Napi::Object& o, const char* name, const std::string& def = {});
bool has(const Napi::Object& o, const char* name);
std::optional<double> number_field(const Napi::Object& o, const char* name);
bool bool_field(const Napi::Object& o, const char* name, bool def);

}  // namespace mailers_node
