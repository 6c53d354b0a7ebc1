// JavaScript values to and from the engine's types. Field names are the
// C++ ones in camelCase; enums are their `to_string` names. Every reader
// throws a TypeError naming the field it could not read, before anything
// is sent to the engine.
#pragma once

#include <napi.h>

#include <array>
#include <chrono>
#include <mailers.hpp>
#include <mailers/postgres_store.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailers_node {

/// What a failed operation reports: the error and what JS needs to build
/// the matching Error subclass (lib/errors.js).
struct failure_info {
    mailers::error_code ec;
    mailers::diagnostics diag;
    std::string message;  // overrides ec.message() when set
    std::optional<mailers::time_point> retry_at;
    /// A refused template: which step and field, and where in which part.
    std::optional<mailers::sequence_error> where = std::nullopt;
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
Napi::Object to_js(Napi::Env env, const mailers::stored_provider& p);
Napi::Object to_js(Napi::Env env, const mailers::audit_record& r);
Napi::Object to_js(Napi::Env env, const mailers::audit_head& h);
Napi::Object to_js(Napi::Env env, const mailers::engine_stats& s);
Napi::Object to_js(Napi::Env env, const mailers::queued_send& q);
Napi::Object to_js(Napi::Env env, const mailers::queue_summary& q);
Napi::Object to_js(Napi::Env env, const mailers::webhook_result& r);
Napi::Object to_js(Napi::Env env, const mailers::ingest_result& r);
Napi::Object to_js(Napi::Env env, const mailers::unsubscribe_result& r);
Napi::Object to_js(Napi::Env env, const mailers::outbound& o);
Napi::Object to_js(Napi::Env env, const mailers::suppression_verify_report& r);
Napi::Object to_js(Napi::Env env, const mailers::sequence_config& c);
Napi::Object to_js(Napi::Env env, const mailers::enrollment& e);
Napi::Object to_js(Napi::Env env, const mailers::campaign_info& c);
Napi::Object to_js(Napi::Env env, const mailers::campaign_progress& p);
Napi::Object to_js(Napi::Env env, const mailers::forecast_plan& p);
Napi::Object to_js(Napi::Env env, const mailers::webhook_endpoint& ep);
Napi::Object to_js(Napi::Env env, const mailers::webhook_delivery& d);
Napi::Object to_js(Napi::Env env, const mailers::webhook_delivery_counts& c);
Napi::Object to_js(Napi::Env env, const mailers::report_ingest_result& r);
Napi::Object to_js(Napi::Env env, const mailers::daily_count& c);
Napi::Object to_js(Napi::Env env, const mailers::soft_bounce_policy& p);
Napi::Object to_js(Napi::Env env, const mailers::pause_rule& r);
Napi::Object to_js(Napi::Env env, const mailers::rule_firing& f);
Napi::Object to_js(Napi::Env env, const mailers::access_policy& p);
Napi::Object to_js(Napi::Env env, const mailers::pipeline_latencies& l);
Napi::Object to_js(Napi::Env env, const mailers::erasure_report& r);
Napi::Object to_js(Napi::Env env, const mailers::retention_report& r);

mailers::principal principal_from(const Napi::Value& v, const mailers::principal& fallback);
mailers::send_request send_request_from(const Napi::Value& v, const mailers::principal& actor);
mailers::enqueue_options enqueue_options_from(const Napi::Value& v);
mailers::mailbox_config mailbox_from(const Napi::Value& v);
mailers::pool_config pool_from(const Napi::Value& v);
mailers::quota quota_from(const Napi::Value& v);
mailers::quota_scope quota_scope_from(const Napi::Value& v);
mailers::pause_target pause_target_from(const Napi::Value& v);
mailers::pause_scope pause_scope_from(const Napi::Value& v, mailers::pause_scope def);
mailers::count_scope count_scope_from(const Napi::Value& v);
/// A Date (or milliseconds) as the UTC day holding it.
mailers::count_day day_from(const Napi::Value& v, const char* field);
mailers::soft_bounce_policy soft_bounce_policy_from(const Napi::Value& v);
mailers::pause_rule pause_rule_from(const Napi::Value& v);
mailers::suppression_kind suppression_kind_from(const Napi::Value& v);
mailers::suppression_reason suppression_reason_from(const Napi::Value& v);
mailers::role role_from(const Napi::Value& v);
mailers::access_grant grant_from(const Napi::Value& v);
mailers::retention_policy retention_policy_from(const Napi::Value& v);
/// An object of string values, as a template's variables.
mailers::template_variables template_variables_from(const Napi::Value& v, const char* field);
mailers::webhook_provider webhook_provider_from(const Napi::Value& v);
mailers::webhook_params webhook_params_from(const Napi::Value& v);
/// A webhook request as `{method, headers, body}` (body a string or a
/// Buffer), owning its bytes; `view()` is what parse_webhook takes.
struct owned_webhook_request {
    std::string method;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::vector<mailers::http_header> header_views;
    mailers::webhook_request view();
};
owned_webhook_request webhook_request_from(const Napi::Value& v);
mailers::audit_head audit_head_from(const Napi::Value& v);
mailers::sequence_config sequence_from(const Napi::Value& v);
mailers::enroll_options enroll_options_from(const Napi::Value& v);
mailers::enrollment_filter enrollment_filter_from(const Napi::Value& v);
mailers::campaign_config campaign_from(const Napi::Value& v);
mailers::forecast_request forecast_from(const Napi::Value& v);
mailers::webhook_endpoint webhook_endpoint_from(const Napi::Value& v);
mailers::webhook_delivery_filter webhook_delivery_filter_from(const Napi::Value& v);
/// Engine.open's `webhooks` options over the engine's defaults.
mailers::outbound_webhook_params outbound_webhooks_from(const Napi::Value& v);

/// The helpers that need no engine (utilities.cpp): templates, address
/// normalisation and parsing, and the Standard Webhooks check.
void init_utilities(Napi::Env env, Napi::Object exports);

/// Where a refused sequence or campaign template went wrong, found by
/// compiling it again: the engine's refusal carries only the message.
std::optional<mailers::sequence_error> locate_sequence_error(const mailers::sequence_config& c);
std::optional<mailers::sequence_error> locate_template_error(const mailers::template_source& t);

/// Small readers and writers shared by the converters and the engine wrapper.
[[noreturn]] void type_error(const Napi::Env& env, const std::string& what);
Napi::String str(Napi::Env env, std::string_view s);
Napi::Number num(Napi::Env env, double d);
Napi::Object obj(const Napi::Value& v, const char* what);
mailers::address address_from(const Napi::Value& v, const char* field);
std::string addr_to_string(const mailers::address& a);
std::vector<std::string> strings_from(const Napi::Object& o, const char* field);
Napi::Array strings_to_js(Napi::Env env, const std::vector<std::string>& v);
mailers::time_point time_from(const Napi::Value& v, const char* field);
std::uint64_t uint_field(const Napi::Object& o, const char* name, std::uint64_t def);
std::chrono::seconds seconds_field(const Napi::Object& o, const char* name,
                                   std::chrono::seconds def);
std::string string_field(const Napi::Object& o, const char* name, const std::string& def = {});
bool has(const Napi::Object& o, const char* name);
std::optional<double> number_field(const Napi::Object& o, const char* name);
bool bool_field(const Napi::Object& o, const char* name, bool def);

/// An enum named by one of `names` (its values in order); a TypeError
/// listing them otherwise.
template <class E, std::size_t N>
E named_from(const Napi::Value& v, const char* field,
             const std::array<std::string_view, N>& names) {
    if (v.IsString()) {
        auto s = v.As<Napi::String>().Utf8Value();
        for (std::size_t i = 0; i < N; ++i)
            if (names[i] == s) return static_cast<E>(i);
    }
    std::string list;
    for (std::size_t i = 0; i < N; ++i) {
        if (i) list += ", ";
        list += names[i];
    }
    type_error(v.Env(), std::string(field) + " must be one of: " + list);
}

/// The same for the enums the library names with `to_string`; N is how
/// many values E has.
template <class E, int N>
E enum_from(const Napi::Value& v, const char* field) {
    std::array<std::string_view, N> names;
    for (int i = 0; i < N; ++i)
        names[static_cast<std::size_t>(i)] = mailers::to_string(static_cast<E>(i));
    return named_from<E>(v, field, names);
}

}  // namespace mailers_node
