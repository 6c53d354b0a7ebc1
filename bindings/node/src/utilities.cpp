// The addon's exports that need no engine: templates, address
// normalisation and parsing, and the Standard Webhooks check a receiver of
// outbound webhooks runs. Synchronous: each is a little CPU work on the
// calling thread. A refusal is thrown as the plain error object that
// lib/utilities.js turns into its Error subclass, as engine calls reject.
#include <napi.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <mailers/webhook_signing.hpp>

#include "convert.hpp"

namespace mailers_node {
namespace {

[[noreturn]] void throw_failure(Napi::Env env, const failure_info& f) {
    throw Napi::Error(env, to_js(env, f));
}

std::string string_at(const Napi::CallbackInfo& info, std::size_t i, const char* what) {
    if (info.Length() <= i || !info[i].IsString())
        type_error(info.Env(), std::string(what) + " must be a string");
    return info[i].As<Napi::String>().Utf8Value();
}

std::string bytes_at(const Napi::CallbackInfo& info, std::size_t i, const char* what) {
    if (info.Length() > i && info[i].IsBuffer()) {
        auto b = info[i].As<Napi::Buffer<char>>();
        return {b.Data(), b.Length()};
    }
    if (info.Length() <= i || !info[i].IsString())
        type_error(info.Env(), std::string(what) + " must be a string or a Buffer");
    return info[i].As<Napi::String>().Utf8Value();
}

Napi::Object options_at(const Napi::CallbackInfo& info, std::size_t i) {
    if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull())
        return Napi::Object::New(info.Env());
    return obj(info[i], "options");
}

failure_info bad_address(const mailers::error_code& ec, const std::string& a) {
    return {ec, {}, "'" + a + "' is not a valid address", {}};
}

Napi::Value normalise(const Napi::CallbackInfo& info) {
    auto a = string_at(info, 0, "address");
    auto o = options_at(info, 1);
    auto r = mailers::normalise_address(
        a, {bool_field(o, "foldPlusTags", false), bool_field(o, "foldGmailDots", false)});
    if (!r) throw_failure(info.Env(), bad_address(r.error(), a));
    return str(info.Env(), *r);
}

Napi::Value parse(const Napi::CallbackInfo& info) {
    auto a = string_at(info, 0, "address");
    auto r = mailers::parse_address(a);
    if (!r) throw_failure(info.Env(), bad_address(r.error(), a));
    auto o = Napi::Object::New(info.Env());
    o.Set("address", str(info.Env(), r->addr_spec()));
    o.Set("displayName", str(info.Env(), r->display_name));
    return o;
}

// A seed is 64 bits: a BigInt, so that render() gets back what C++ computes.
Napi::Value seed(const Napi::CallbackInfo& info) {
    auto id = string_at(info, 0, "enrollment id");
    if (info.Length() < 2 || !info[1].IsNumber()) type_error(info.Env(), "step must be a number");
    auto step = info[1].As<Napi::Number>().Int64Value();
    if (step < 0) type_error(info.Env(), "step must be a non-negative integer");
    return Napi::BigInt::New(info.Env(),
                             mailers::template_seed(id, static_cast<std::uint64_t>(step)));
}

// verifyWebhookSignature(secret, headers, body, {now, tolerance}).
Napi::Value verify_signature(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    auto secret = string_at(info, 0, "secret");
    std::string id, timestamp, signature;
    if (info.Length() > 1 && info[1].IsObject()) {
        auto h = info[1].As<Napi::Object>();
        auto names = h.GetPropertyNames();
        for (uint32_t i = 0; i < names.Length(); ++i) {
            auto n = names.Get(i).As<Napi::String>().Utf8Value();
            auto v = h.Get(n);
            if (v.IsArray()) v = v.As<Napi::Array>().Get(0u);
            for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            auto value = v.ToString().Utf8Value();
            if (n == "webhook-id") id = value;
            if (n == "webhook-timestamp") timestamp = value;
            if (n == "webhook-signature") signature = value;
        }
    } else {
        type_error(env, "headers must be an object");
    }
    auto body = bytes_at(info, 2, "body");
    auto o = options_at(info, 3);
    mailers::standard_webhooks::verify_params p;
    p.now = has(o, "now") ? time_from(o.Get("now"), "now")
                          : std::chrono::time_point_cast<std::chrono::microseconds>(
                                std::chrono::system_clock::now());
    p.tolerance = seconds_field(o, "tolerance", p.tolerance);
    auto r = mailers::standard_webhooks::verify(secret, id, timestamp, body, signature, p);
    auto out = Napi::Object::New(env);
    out.Set("ok", Napi::Boolean::New(env, r.http_status == 200));
    out.Set("httpStatus", num(env, r.http_status));
    out.Set("reason", str(env, r.reason));
    return out;
}

// A template compiled once, then checked and rendered as often as needed.
class native_template : public Napi::ObjectWrap<native_template> {
public:
    static Napi::Function define(Napi::Env env) {
        return DefineClass(
            env, "NativeTemplate",
            {InstanceMethod<&native_template::variables>("variables"),
             InstanceMethod<&native_template::required_variables>("requiredVariables"),
             InstanceMethod<&native_template::check>("check"),
             InstanceMethod<&native_template::render>("render")});
    }

    explicit native_template(const Napi::CallbackInfo& info)
        : Napi::ObjectWrap<native_template>(info) {
        mailers::template_source src;
        if (info.Length() > 0 && !info[0].IsUndefined()) {
            auto o = obj(info[0], "a template");
            src.subject = string_field(o, "subject");
            src.text = string_field(o, "text");
            src.html = string_field(o, "html");
        }
        mailers::template_error at;
        auto t = mailers::message_template::compile(src, &at);
        if (!t) throw_failure(info.Env(), refusal(t.error(), at));
        tpl_ = std::move(*t);
    }

private:
    static failure_info refusal(mailers::error_code ec, const mailers::template_error& at) {
        failure_info f{ec, {}, at.to_string(), {}};
        f.where = mailers::sequence_error{0, "content", at, at.message};
        return f;
    }

    Napi::Value variables(const Napi::CallbackInfo& info) {
        return strings_to_js(info.Env(), tpl_->variables());
    }
    Napi::Value required_variables(const Napi::CallbackInfo& info) {
        return strings_to_js(info.Env(), tpl_->required_variables());
    }
    Napi::Value check(const Napi::CallbackInfo& info) {
        auto c = tpl_->check(vars_at(info));
        auto o = Napi::Object::New(info.Env());
        o.Set("missing", strings_to_js(info.Env(), c.missing));
        o.Set("invalid", strings_to_js(info.Env(), c.invalid));
        return o;
    }
    Napi::Value render(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        auto vars = vars_at(info);
        std::uint64_t seed = 0;
        if (info.Length() > 1 && info[1].IsBigInt()) {
            bool lossless = true;
            seed = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
            if (!lossless) type_error(env, "seed must fit in 64 bits");
        } else if (info.Length() > 1 && info[1].IsNumber()) {
            auto n = info[1].As<Napi::Number>().DoubleValue();
            if (!(n >= 0) || n != std::floor(n) || n > 9007199254740991.0)
                type_error(env, "seed must be a non-negative integer");
            seed = static_cast<std::uint64_t>(n);
        } else if (info.Length() > 1 && !info[1].IsUndefined()) {
            type_error(env, "seed must be a BigInt or a number");
        }
        mailers::template_error at;
        auto r = tpl_->render(vars, seed, &at);
        if (!r) throw_failure(env, refusal(r.error(), at));
        auto o = Napi::Object::New(env);
        o.Set("subject", str(env, r->subject));
        o.Set("text", str(env, r->text));
        o.Set("html", str(env, r->html));
        return o;
    }
    static mailers::template_variables vars_at(const Napi::CallbackInfo& info) {
        if (info.Length() == 0 || info[0].IsUndefined()) return {};
        return template_variables_from(info[0], "variables");
    }

    std::optional<mailers::message_template> tpl_;
};

}  // namespace

void init_utilities(Napi::Env env, Napi::Object exports) {
    exports.Set("NativeTemplate", native_template::define(env));
    exports.Set("normaliseAddress", Napi::Function::New(env, normalise));
    exports.Set("parseAddress", Napi::Function::New(env, parse));
    exports.Set("templateSeed", Napi::Function::New(env, seed));
    exports.Set("verifyWebhookSignature", Napi::Function::New(env, verify_signature));
}

}  // namespace mailers_node
