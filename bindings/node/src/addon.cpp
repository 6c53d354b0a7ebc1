// The native half of the Node.js binding: one `NativeEngine` per engine,
// wrapped by lib/engine.js, which turns its plain error objects into Error
// subclasses and its event callback into an EventEmitter.
//
// Threads: the engine runs on an io_context this object owns, on a thread
// of its own. Calls that block (configuration, suppression, audit: they
// wait for a durable commit) run on a small pool of their own, so neither
// the JS thread nor the engine's executor waits for the store. Every
// completion reaches JS through the dispatcher (dispatcher.hpp).
//
// Lifetimes (bindings/node/README.md):
//   * while an operation is in flight, the JS object is strongly held (it
//     cannot be collected) and the event loop is kept alive; idle, neither;
//   * close() cancels, flushes, leaves the workspace, stops the threads and
//     then settles; afterwards every call rejects with OperationAbortedError;
//   * collected while idle: the finalizer closes the engine the same way;
//   * a worker ending: an environment cleanup hook closes the engine
//     synchronously; process.exit() (or any exit()), which runs no cleanup
//     hook, closes every engine from an atexit handler (engine_registry).
//     Either way promises still pending never settle, and writes already
//     queued to the store are flushed.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cmath>
#include <cstdlib>
#include <future>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <thread>

#include "convert.hpp"
#include "dispatcher.hpp"

namespace mailers_node {
namespace {

namespace asio = boost::asio;

std::atomic<int> live_engines{0};

/// Everything the engine's threads share. Never destroyed on those threads:
/// they hold only the dispatcher.
struct host {
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::thread io_thread;
    asio::thread_pool blocking{2};
    std::shared_mutex mutex;  // shared: a call on `eng`; exclusive: destroying it
    std::unique_ptr<mailers::engine> eng;
    std::map<std::string, std::shared_ptr<mailers::capture_transport>> captures;
    std::shared_ptr<mailers::memory_replay_cache> replay =
        std::make_shared<mailers::memory_replay_cache>();
    bool stopped = false;  // guarded by the exclusive lock
    std::mutex shutdown_mutex;

    host() {
        io_thread = std::thread([this] { io.run(); });
    }

    /// Cancels, destroys the engine (which flushes and leaves the
    /// workspace), lets the io thread finish what is posted and joins it.
    /// Blocking; called once, off the io thread.
    void shutdown() {
        // A second caller (close() racing the environment's teardown) waits
        // for the first to finish.
        std::lock_guard once(shutdown_mutex);
        {
            std::unique_lock lock(mutex);
            if (stopped) return;
            stopped = true;
            if (eng) {
                eng->cancel();
                // A send checks for cancel() and then, in the same handler
                // on the io thread, for the workspace lease; leaving the
                // workspace (eng.reset()) while that handler runs would fail
                // the send as a lost lease where cancel() promises
                // operation_aborted. Let the io thread finish the handler it
                // is in: every later one sees the cancel.
                std::promise<void> idle;
                asio::post(io, [&idle] { idle.set_value(); });
                idle.get_future().wait();
            }
            eng.reset();
        }
        work.reset();
        if (io_thread.joinable()) io_thread.join();
        blocking.join();
    }
};

/// The engines of this process, so that exit() stops them before it tears
/// down what their threads use.
///
/// process.exit() never runs the environment's cleanup hooks: Node calls
/// exit() directly, and exit() runs the atexit handlers and the static
/// destructors (OpenSSL's cleanup among them) while the engines' threads
/// are still sending; a send drawing random bytes for its Message-ID then
/// takes a lock OpenSSL has just freed. exit() runs its handlers in the
/// reverse order of registration, so one registered when the first engine
/// is made runs before everything registered earlier (Node's and OpenSSL's
/// handlers, libmailers' static destructors) and stops each engine there
/// as close() does, while all it needs still exists.
class engine_registry {
public:
    static engine_registry& get() {
        // Never destroyed: it is read from the atexit handler, whose order
        // against this object's destructor would be a guess.
        static auto* r = new engine_registry;
        return *r;
    }

    void add(const std::shared_ptr<dispatcher>& d, const std::shared_ptr<host>& h) {
        std::call_once(at_exit_once_, [] { std::atexit([] { get().stop_all(); }); });
        std::lock_guard lock(mutex_);
        live_[h.get()] = {d, h};
    }
    void remove(const host* h) {
        std::lock_guard lock(mutex_);
        live_.erase(h);
    }

private:
    struct entry {
        std::weak_ptr<dispatcher> disp;
        std::weak_ptr<host> h;
    };

    // Runs inside exit(), on the thread that called it, with V8 already
    // disposed: nothing here calls into N-API. Completions the shutdown
    // produces meet a closed dispatcher and are dropped.
    void stop_all() {
        std::vector<entry> all;
        {
            std::lock_guard lock(mutex_);
            for (auto& [_, e] : live_) all.push_back(e);
        }
        for (auto& e : all)
            if (auto d = e.disp.lock()) d->abandon();
        for (auto& e : all)
            if (auto h = e.h.lock()) h->shutdown();
    }

    std::once_flag at_exit_once_;
    std::mutex mutex_;
    std::map<const host*, entry> live_;
};

using maker = std::function<Napi::Value(Napi::Env)>;

class native_engine : public Napi::ObjectWrap<native_engine> {
public:
    static Napi::Function define(Napi::Env env) {
        return DefineClass(env, "NativeEngine",
                           {
                               InstanceMethod<&native_engine::start>("start"),
                               InstanceMethod<&native_engine::close>("close"),
                               InstanceMethod<&native_engine::send>("send"),
                               InstanceMethod<&native_engine::enqueue>("enqueue"),
                               InstanceMethod<&native_engine::enqueue_and_wait>("enqueueAndWait"),
                               InstanceMethod<&native_engine::call>("call"),
                               InstanceMethod<&native_engine::captured>("captured"),
                               InstanceMethod<&native_engine::set_listening>("setListening"),
                               InstanceMethod<&native_engine::pending>("pending"),
                               InstanceMethod<&native_engine::set_time>("setTime"),
                               InstanceMethod<&native_engine::now>("now"),
                           });
    }

    explicit native_engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<native_engine>(info) {
        auto env = info.Env();
        if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
            throw Napi::TypeError::New(env, "NativeEngine(options, onEvent)");
        options_ = Napi::Persistent(info[0].As<Napi::Object>());
        // Kept on the object, not in a strong reference, so that an idle
        // engine and its wrapper can be collected together.
        info.This().As<Napi::Object>().Set("_emit", info[1]);
        disp_ = std::make_shared<dispatcher>(env);
        host_ = std::make_shared<host>();
        ++live_engines;
        engine_registry::get().add(disp_, host_);
        // Weak: a collected engine's host goes with it; the hook then finds nothing.
        env.AddCleanupHook([h = std::weak_ptr<host>(host_), d = std::weak_ptr<dispatcher>(disp_)] {
            if (auto dd = d.lock()) dd->release();
            if (auto hh = h.lock()) hh->shutdown();
        });
    }

    ~native_engine() override {
        // Collected while idle (in-flight work holds a strong reference), or
        // after close(). shutdown() is idempotent.
        disp_->release();
        host_->shutdown();
        engine_registry::get().remove(host_.get());
        --live_engines;
    }

private:
    // --- bookkeeping -------------------------------------------------------------

    void begin(Napi::Env env) {
        if (disp_->holds() == 0) Ref();
        disp_->hold(env);
    }
    void end(Napi::Env env) {
        disp_->unhold(env);
        if (disp_->holds() == 0) Unref();
    }

    Napi::Value rejected(Napi::Env env, const failure_info& f) {
        auto d = Napi::Promise::Deferred::New(env);
        d.Reject(to_js(env, f));
        return d.Promise();
    }
    // A bad argument (a Napi::Error, a TypeError for JS) rejects as it is;
    // the library's errors as their Error subclass.
    Napi::Value rejection(Napi::Env env, std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const Napi::Error& x) {
            auto d = Napi::Promise::Deferred::New(env);
            d.Reject(x.Value());
            return d.Promise();
        } catch (...) {
            return rejected(env, from_exception(std::current_exception()));
        }
    }
    Napi::Value aborted(Napi::Env env) {
        return rejected(env, {mailers::errc::operation_aborted, {}, "the engine is closed", {}});
    }

    /// Runs `work` on the blocking pool and settles a promise with what it
    /// makes on the JS thread.
    Napi::Value blocking(Napi::Env env, std::function<maker(mailers::engine&)> work) {
        if (closing_ || !started_) return aborted(env);
        auto d = Napi::Promise::Deferred::New(env);
        begin(env);
        asio::post(host_->blocking, [h = host_.get(), disp = disp_, self = this, d,
                                     work = std::move(work)] {
            maker mk;
            std::optional<failure_info> fail;
            {
                std::shared_lock lock(h->mutex);
                if (!h->eng) {
                    fail = failure_info{
                        mailers::errc::operation_aborted, {}, "the engine is closed", {}};
                } else {
                    try {
                        mk = work(*h->eng);
                    } catch (...) {
                        fail = from_exception(std::current_exception());
                    }
                }
            }
            disp->post([self, d, mk = std::move(mk), fail = std::move(fail)](Napi::Env env) {
                self->end(env);
                if (fail)
                    d.Reject(to_js(env, *fail));
                else
                    d.Resolve(mk ? mk(env) : env.Undefined());
            });
        });
        return d.Promise();
    }

    // --- start / close -----------------------------------------------------------

    // Opens the store and constructs the engine (both block) off the JS thread.
    Napi::Value start(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        if (started_ || closing_) return aborted(env);
        auto o = options_.Value();
        mailers::engine_params p;
        std::string sqlite_path, pg_conninfo, pg_schema = "mailers";
        mailers::open_mode mode = mailers::open_mode::open_or_create;
        bool power_loss_safe = false;
        std::size_t pg_pool = 4;
        try {
            p.workspace = string_field(o, "workspace", p.workspace);
            auto m = string_field(o, "mode", "open_or_create");
            if (m == "existing")
                mode = mailers::open_mode::existing;
            else if (m == "create")
                mode = mailers::open_mode::create;
            else if (m != "open_or_create")
                throw Napi::TypeError::New(env,
                                           "mode must be one of: existing, create, open_or_create");
            sqlite_path = string_field(o, "sqlite");
            power_loss_safe = string_field(o, "durability") == "power_loss_safe";
            pg_conninfo = string_field(o, "postgres");
            pg_schema = string_field(o, "schema", pg_schema);
            if (auto n = number_field(o, "poolSize")) pg_pool = static_cast<std::size_t>(*n);
            if (sqlite_path.empty() == pg_conninfo.empty())
                throw Napi::TypeError::New(
                    env, "give exactly one of sqlite (a file path) or postgres (a conninfo)");
            actor_ = principal_from(o.Get("actor"), actor_);
            p.audit_key = string_field(o, "auditKey");
            p.erasure_key = string_field(o, "erasureKey");
            p.member_name = string_field(o, "memberName", "node");
            p.message_id_domain = string_field(o, "messageIdDomain");
            p.drain_queue = bool_field(o, "drainQueue", true);
            if (auto n = number_field(o, "randomSeed"))
                p.random_seed = static_cast<std::uint64_t>(*n);
            if (auto n = number_field(o, "maxMessageSize"))
                p.max_message_size = static_cast<std::size_t>(*n);
            if (auto n = number_field(o, "syncIntervalMs"))
                p.sync_interval = std::chrono::milliseconds(static_cast<long>(*n));
            if (auto n = number_field(o, "ruleCheckIntervalSeconds"))
                p.rule_check_interval = std::chrono::seconds(static_cast<long>(*n));
            if (auto n = number_field(o, "queuePollIntervalMs"))
                p.queue_poll_interval = std::chrono::milliseconds(static_cast<long>(*n));
            if (has(o, "manualClock")) {
                auto v = o.Get("manualClock");
                double ms = v.IsDate() ? v.As<Napi::Date>().ValueOf() : v.ToNumber().DoubleValue();
                clock_ = std::make_shared<mailers::manual_clock>(mailers::time_point(
                    std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000.0))));
                p.clock = clock_;
            }
            if (has(o, "suppression")) {
                auto s = o.Get("suppression").As<Napi::Object>();
                p.suppression = mailers::suppression_options{bool_field(s, "foldPlusTags", false),
                                                             bool_field(s, "foldGmailDots", false)};
            }
            p.webhooks = outbound_webhooks_from(o.Get("webhooks"));
            if (has(o, "unsubscribe")) {
                auto u = o.Get("unsubscribe").As<Napi::Object>();
                p.unsubscribe.url = string_field(u, "url");
                p.unsubscribe.secret = string_field(u, "secret");
                p.unsubscribe.mailto = string_field(u, "mailto");
            }
        } catch (...) {
            return rejection(env, std::current_exception());
        }
        started_ = true;
        auto d = Napi::Promise::Deferred::New(env);
        begin(env);
        asio::post(host_->blocking, [h = host_.get(), disp = disp_, self = this, d,
                                     p = std::move(p), sqlite_path, pg_conninfo, pg_schema, pg_pool,
                                     mode, power_loss_safe]() mutable {
            std::optional<failure_info> fail;
            try {
                if (!sqlite_path.empty()) {
                    mailers::sqlite_store_params sp;
                    sp.path = sqlite_path;
                    sp.mode = mode;
                    if (power_loss_safe)
                        sp.durability = mailers::sqlite_durability::power_loss_safe;
                    p.storage = mailers::open_sqlite_store(sp);
                } else {
                    mailers::postgres_store_params pp;
                    pp.conninfo = pg_conninfo;
                    pp.schema = pg_schema;
                    pp.mode = mode;
                    pp.pool_size = pg_pool;
                    p.storage = mailers::open_postgres_store(pp);
                }
                auto eng = std::make_unique<mailers::engine>(h->io.get_executor(), std::move(p));
                // Events are copied here, on the engine's executor, and
                // converted on the JS thread; nothing runs in JS from here.
                std::weak_ptr<dispatcher> weak = disp;
                eng->on_event([weak, self, listening = &self->listening_](const mailers::event& e) {
                    if (!listening->load(std::memory_order_relaxed)) return;
                    if (auto d = weak.lock())
                        d->post([self, e](Napi::Env env) { self->emit(env, e); });
                });
                std::unique_lock lock(h->mutex);
                if (h->stopped)
                    throw mailers::exception(mailers::errc::operation_aborted,
                                             "the engine is closed");
                h->eng = std::move(eng);
            } catch (...) {
                fail = from_exception(std::current_exception());
            }
            disp->post([self, d, fail = std::move(fail)](Napi::Env env) {
                self->end(env);
                if (fail) {
                    self->closing_ = true;
                    d.Reject(to_js(env, *fail));
                } else {
                    d.Resolve(env.Undefined());
                }
            });
        });
        return d.Promise();
    }

    Napi::Value close(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        auto d = Napi::Promise::Deferred::New(env);
        if (close_promise_) {
            d.Resolve(close_promise_.Value());
            return d.Promise();
        }
        closing_ = true;
        close_promise_ = Napi::Persistent(d.Promise().As<Napi::Object>());
        begin(env);
        // A thread of its own: shutdown() joins the blocking pool.
        std::thread([h = host_, disp = disp_, self = this, d] {
            h->shutdown();
            disp->post([self, d](Napi::Env env) {
                self->end(env);
                d.Resolve(env.Undefined());
                self->disp_->release();
            });
        }).detach();
        return d.Promise();
    }

    // --- sending -----------------------------------------------------------------

    Napi::Value send(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        if (closing_ || !started_) return aborted(env);
        mailers::send_request req;
        try {
            req = send_request_from(info[0], actor_);
        } catch (...) {
            return rejection(env, std::current_exception());
        }
        auto d = Napi::Promise::Deferred::New(env);
        begin(env);
        std::shared_lock lock(host_->mutex);
        if (!host_->eng) {
            lock.unlock();
            end(env);
            return aborted(env);
        }
        host_->eng->async_send(std::move(req), [disp = disp_, self = this, d](
                                                   mailers::error_code ec, mailers::send_result r) {
            disp->post([self, d, ec, r = std::move(r)](Napi::Env env) {
                self->end(env);
                if (!ec) {
                    d.Resolve(to_js(env, r));
                } else {
                    auto err = to_js(env, failure_info{ec, r.diag, {}, r.retry_at});
                    err.Set("result", to_js(env, r));
                    d.Reject(err);
                }
            });
        });
        return d.Promise();
    }

    // Reads enqueue's (request, options); a rejected promise when they are bad.
    std::optional<Napi::Value> enqueue_args(const Napi::CallbackInfo& info,
                                            mailers::send_request& req,
                                            mailers::enqueue_options& opts) {
        try {
            req = send_request_from(info[0], actor_);
            opts = enqueue_options_from(info[1]);
            return std::nullopt;
        } catch (...) {
            return rejection(info.Env(), std::current_exception());
        }
    }

    Napi::Value enqueue(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        mailers::send_request req;
        mailers::enqueue_options opts;
        if (auto bad = enqueue_args(info, req, opts)) return *bad;
        return blocking(env, [req = std::move(req), opts](mailers::engine& e) -> maker {
            auto id = e.enqueue(req, opts);
            return [id](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(id)); };
        });
    }

    // Enqueues, then settles once the item has ended (done or cancelled).
    Napi::Value enqueue_and_wait(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        if (closing_ || !started_) return aborted(env);
        mailers::send_request req;
        mailers::enqueue_options opts;
        if (auto bad = enqueue_args(info, req, opts)) return *bad;
        auto d = Napi::Promise::Deferred::New(env);
        begin(env);
        auto finish = [disp = disp_, self = this, d](mailers::error_code ec,
                                                     mailers::queued_send q) {
            disp->post([self, d, ec, q = std::move(q)](Napi::Env env) {
                self->end(env);
                if (!ec)
                    d.Resolve(to_js(env, q));
                else
                    d.Reject(to_js(env, failure_info{ec, {}, {}, {}}));
            });
        };
        // async_enqueue blocks until the item is stored: not on the JS thread.
        asio::post(host_->blocking,
                   [h = host_.get(), req = std::move(req), opts, finish]() mutable {
                       std::shared_lock lock(h->mutex);
                       if (!h->eng) return finish(mailers::errc::operation_aborted, {});
                       try {
                           h->eng->async_enqueue(std::move(req), opts, finish);
                       } catch (...) {
                           finish(from_exception(std::current_exception()).ec, {});
                       }
                   });
        return d.Promise();
    }

    // --- provider checks -----------------------------------------------------------

    // Checks provider `id` as the engine sends through it
    // (engine::async_check_provider), or the transport `{ dsn }` builds
    // (engine::async_check_dsn), sending nothing; the check runs on the io
    // thread and close() cancels it. Resolves with the check; a failed one
    // rejects as its failure class's Error, the check on `result`; the
    // engine's refusals as theirs.
    Napi::Value check_provider(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        auto v = arg(info, 1);
        std::string id, dsn;
        if (v.IsString())
            id = v.As<Napi::String>().Utf8Value();
        else if (v.IsObject() && v.As<Napi::Object>().Get("dsn").IsString())
            dsn = string_field(v.As<Napi::Object>(), "dsn");
        else
            throw Napi::TypeError::New(env, "checkProvider takes a provider's id or { dsn }");
        if (closing_ || !started_) return aborted(env);
        auto d = Napi::Promise::Deferred::New(env);
        begin(env);
        auto checked = [disp = disp_, self = this, d](mailers::error_code ec,
                                                      mailers::provider_check r) {
            disp->post([self, d, ec, r = std::move(r)](Napi::Env env) {
                self->end(env);
                // The engine's own refusals (unknown id, a DSN that does not
                // build, cancelled) carry no check.
                if (ec && ec.category() == mailers::error_category())
                    return d.Reject(to_js(env, failure_info{ec, r.diag, r.diag.message, {}}));
                auto o = Napi::Object::New(env);
                o.Set("provider", Napi::String::New(env, r.provider));
                o.Set("transport", Napi::String::New(env, r.transport));
                o.Set("ok", Napi::Boolean::New(env, !ec));
                o.Set("failure", ec ? Napi::Value(Napi::String::New(
                                          env, std::string(to_string(mailers::classify(ec)))))
                                    : env.Null());
                o.Set("message", Napi::String::New(env, r.diag.message));
                if (!ec) return d.Resolve(o);
                auto err = to_js(env, failure_info{ec, r.diag, {}, {}});
                err.Set("result", o);
                d.Reject(err);
            });
        };
        // Under the engine's lock, off the JS thread: close() holds it while
        // it destroys the engine.
        asio::post(host_->blocking, [h = host_.get(), who = actor_, id, dsn, checked]() {
            std::shared_lock lock(h->mutex);
            if (!h->eng) {
                mailers::provider_check r;
                r.diag.message = "the engine is closed";
                return checked(mailers::errc::operation_aborted, std::move(r));
            }
            if (!id.empty())
                h->eng->async_check_provider(who, id, checked);
            else
                h->eng->async_check_dsn(who, dsn, checked);
        });
        return d.Promise();
    }

    // --- everything else: call(name, ...args) ------------------------------------

    Napi::Value call(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        try {
            if (info.Length() < 1 || !info[0].IsString())
                throw Napi::TypeError::New(env, "call(name, ...)");
            return dispatch_call(env, info[0].As<Napi::String>().Utf8Value(), info);
        } catch (...) {
            return rejection(env, std::current_exception());
        }
    }

    template <class T>
    static maker make_list(std::vector<T> v) {
        return [v = std::move(v)](Napi::Env env) -> Napi::Value {
            auto a = Napi::Array::New(env, v.size());
            for (std::size_t i = 0; i < v.size(); ++i)
                a.Set(static_cast<uint32_t>(i), to_js(env, v[i]));
            return a;
        };
    }
    template <class T>
    static maker make_optional(std::optional<T> v) {
        return [v = std::move(v)](Napi::Env env) -> Napi::Value {
            return v ? Napi::Value(to_js(env, *v)) : env.Null();
        };
    }
    template <class T>
    static maker make_one(T v) {
        return [v = std::move(v)](Napi::Env env) -> Napi::Value { return to_js(env, v); };
    }
    static maker make_bool(bool b) {
        return [b](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, b); };
    }
    static maker make_number(double n) {
        return [n](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, n); };
    }
    static maker make_ids(std::vector<std::uint64_t> ids) {
        return [ids = std::move(ids)](Napi::Env env) -> Napi::Value {
            auto a = Napi::Array::New(env, ids.size());
            for (std::size_t i = 0; i < ids.size(); ++i)
                a.Set(static_cast<uint32_t>(i),
                      Napi::Number::New(env, static_cast<double>(ids[i])));
            return a;
        };
    }
    static maker make_string(std::string s) {
        return
            [s = std::move(s)](Napi::Env env) -> Napi::Value { return Napi::String::New(env, s); };
    }

    std::string string_arg(const Napi::CallbackInfo& info, std::size_t i, const char* what) {
        if (info.Length() <= i || !info[i].IsString())
            throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
        return info[i].As<Napi::String>().Utf8Value();
    }
    Napi::Value arg(const Napi::CallbackInfo& info, std::size_t i) {
        return info.Length() > i ? info[i] : info.Env().Undefined();
    }
    // Each mutating call takes an optional `{ actor }` as its last argument.
    mailers::principal actor_arg(const Napi::CallbackInfo& info, std::size_t i) {
        auto v = arg(info, i);
        if (v.IsObject() && v.As<Napi::Object>().Has("actor"))
            return principal_from(v.As<Napi::Object>().Get("actor"), actor_);
        return actor_;
    }

    // A change read from argument 1, acting as the actor of argument 2.
    template <class Read, class T>
    Napi::Value change(const Napi::CallbackInfo& info, Read read,
                       void (mailers::engine::*fn)(const mailers::principal&, const T&)) {
        T v = read(arg(info, 1));
        auto who = actor_arg(info, 2);
        return blocking(info.Env(), [v = std::move(v), who, fn](mailers::engine& e) -> maker {
            (e.*fn)(who, v);
            return {};
        });
    }
    // A change to the object named in argument 1, with `{ reason, actor }`
    // in argument 2.
    Napi::Value change_with_reason(const Napi::CallbackInfo& info,
                                   void (mailers::engine::*fn)(const mailers::principal&,
                                                               const std::string&,
                                                               std::string_view)) {
        auto id = id_from(arg(info, 1));
        auto why = option(info, 2, "reason");
        auto who = actor_arg(info, 2);
        return blocking(info.Env(), [id, why, who, fn](mailers::engine& e) -> maker {
            (e.*fn)(who, id, why);
            return {};
        });
    }
    // A read of one object by the id in argument 1.
    template <class R, class Wrap>
    Napi::Value query(const Napi::CallbackInfo& info,
                      R (mailers::engine::*fn)(const std::string&) const, Wrap wrap) {
        auto id = id_from(arg(info, 1));
        return blocking(info.Env(),
                        [id, fn, wrap](mailers::engine& e) { return wrap((e.*fn)(id)); });
    }
    static std::string id_from(const Napi::Value& v) {
        if (!v.IsString()) throw Napi::TypeError::New(v.Env(), "id must be a string");
        return v.As<Napi::String>().Utf8Value();
    }
    // What parseWebhook returned: its provider and the native result it hides.
    static std::pair<mailers::webhook_provider, mailers::webhook_result> parsed_webhook_from(
        const Napi::Value& v) {
        auto o = obj(v, "a parsed webhook");
        auto native = o.Get("_parsed");
        if (!native.IsExternal())
            throw Napi::TypeError::New(v.Env(), "applyWebhook takes what parseWebhook returned");
        return {webhook_provider_from(o.Get("provider")),
                *native.As<Napi::External<mailers::webhook_result>>().Data()};
    }
    static std::uint64_t number_id_from(const Napi::Value& v) {
        if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), "id must be a number");
        auto d = v.As<Napi::Number>().DoubleValue();
        if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0)
            throw Napi::TypeError::New(v.Env(), "id must be a non-negative integer");
        return static_cast<std::uint64_t>(d);
    }
    // A string option of the object in argument i ("" when absent).
    static std::string option(const Napi::CallbackInfo& info, std::size_t i, const char* name) {
        auto v = info.Length() > i ? info[i] : info.Env().Undefined();
        return v.IsObject() ? string_field(v.As<Napi::Object>(), name) : std::string();
    }

    Napi::Value dispatch_call(Napi::Env env, const std::string& name,
                              const Napi::CallbackInfo& info) {
        using E = mailers::engine;
        if (name == "addProvider") {
            auto id = string_arg(info, 1, "id");
            auto dsn = string_arg(info, 2, "dsn");
            auto who = actor_arg(info, 3);
            // A capture transport made here, not by the factory, so that
            // captured() can read what it holds.
            if (dsn.rfind("capture:", 0) == 0) {
                auto cap = std::make_shared<mailers::capture_transport>(host_->io.get_executor());
                return blocking(env, [who, id, cap, h = host_.get()](E& e) -> maker {
                    e.add_provider(who, id, cap);
                    std::lock_guard lock(captures_mutex_);
                    h->captures[id] = cap;
                    return {};
                });
            }
            return blocking(env, [who, id, dsn](E& e) -> maker {
                e.add_provider(who, id, std::string_view(dsn));
                return {};
            });
        }
        if (name == "saveProvider") {
            auto id = string_arg(info, 1, "id");
            auto dsn = string_arg(info, 2, "dsn");
            auto who = actor_arg(info, 3);
            return blocking(env, [who, id, dsn](E& e) -> maker {
                e.save_provider(who, id, dsn);
                return {};
            });
        }
        if (name == "removeProvider") return change(info, id_from, &E::remove_provider);
        if (name == "storedProviders")
            return blocking(env, [](E& e) { return make_list(e.stored_providers()); });
        if (name == "checkProvider") return check_provider(info);
        if (name == "upsertMailbox") return change(info, mailbox_from, &E::upsert_mailbox);
        if (name == "retireMailbox") return change(info, id_from, &E::retire_mailbox);
        if (name == "mailbox")
            return query(info, &E::find_mailbox, make_optional<mailers::mailbox_config>);
        if (name == "mailboxes")
            return blocking(env, [](E& e) { return make_list(e.mailboxes()); });
        if (name == "status") return query(info, &E::status, make_one<mailers::mailbox_status>);
        if (name == "upsertPool") return change(info, pool_from, &E::upsert_pool);
        if (name == "removePool") return change(info, id_from, &E::remove_pool);
        if (name == "pool") return query(info, &E::find_pool, make_optional<mailers::pool_config>);
        if (name == "pools") return blocking(env, [](E& e) { return make_list(e.pools()); });
        if (name == "setQuota") return change(info, quota_from, &E::set_quota);
        if (name == "removeQuota") {
            auto scope = quota_scope_from(arg(info, 1));
            auto key = string_arg(info, 2, "key");
            auto who = actor_arg(info, 3);
            return blocking(env, [scope, key, who](E& e) -> maker {
                e.remove_quota(who, scope, key);
                return {};
            });
        }
        if (name == "quotas") return blocking(env, [](E& e) { return make_list(e.quotas()); });
        if (name == "suppress") {
            auto value = string_arg(info, 1, "value");
            auto o = arg(info, 2);
            auto kind = mailers::suppression_kind::address;
            auto reason = mailers::suppression_reason::manual;
            std::string source = "api";
            if (o.IsObject()) {
                auto oo = o.As<Napi::Object>();
                kind = suppression_kind_from(oo.Get("kind"));
                reason = suppression_reason_from(oo.Get("reason"));
                source = string_field(oo, "source", source);
            }
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) -> maker {
                e.suppress(who, kind, value, reason, source);
                return {};
            });
        }
        if (name == "unsuppress") {
            auto value = string_arg(info, 1, "value");
            auto o = arg(info, 2);
            auto kind = o.IsObject() ? suppression_kind_from(o.As<Napi::Object>().Get("kind"))
                                     : mailers::suppression_kind::address;
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) { return make_bool(e.unsuppress(who, kind, value)); });
        }
        if (name == "isSuppressed") {
            auto a = string_arg(info, 1, "address");
            return blocking(env, [a](E& e) { return make_bool(e.is_suppressed(a)); });
        }
        if (name == "findSuppression") {
            auto a = string_arg(info, 1, "address");
            return blocking(env, [a](E& e) { return make_optional(e.find_suppression(a)); });
        }
        if (name == "suppressionCount")
            return blocking(
                env, [](E& e) { return make_number(static_cast<double>(e.suppression_count())); });
        if (name == "importSuppressions") {
            auto csv = string_arg(info, 1, "csv");
            auto o = arg(info, 2);
            std::string source = o.IsObject()
                                     ? string_field(o.As<Napi::Object>(), "source", "csv-import")
                                     : "csv-import";
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) {
                std::istringstream in(csv);
                return make_number(static_cast<double>(e.import_suppressions(who, in, source)));
            });
        }
        if (name == "suppressionRules")
            return blocking(env, [](E& e) -> maker {
                auto r = e.suppression_rules();
                return [r](Napi::Env env) -> Napi::Value {
                    auto o = Napi::Object::New(env);
                    o.Set("foldPlusTags", Napi::Boolean::New(env, r.fold_plus_tags));
                    o.Set("foldGmailDots", Napi::Boolean::New(env, r.fold_gmail_dots));
                    return o;
                };
            });
        if (name == "exportSuppressions") {
            return blocking(env, [](E& e) {
                std::ostringstream out;
                e.export_suppressions(out);
                return make_string(out.str());
            });
        }
        if (name == "pause") {
            auto t = pause_target_from(arg(info, 1));
            auto o = arg(info, 2);
            std::string reason = o.IsObject() ? string_field(o.As<Napi::Object>(), "reason") : "";
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) -> maker {
                e.pause(who, t, reason);
                return {};
            });
        }
        if (name == "resume") {
            auto t = pause_target_from(arg(info, 1));
            auto reason = option(info, 2, "reason");
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) -> maker {
                e.resume(who, t, reason);
                return {};
            });
        }
        if (name == "isPaused") {
            auto t = pause_target_from(arg(info, 1));
            return blocking(env, [t](E& e) { return make_bool(e.is_paused(t)); });
        }
        if (name == "pauses") return blocking(env, [](E& e) { return make_list(e.pauses()); });
        if (name == "dailyCounts") {
            auto t = obj(arg(info, 1), "a count target");
            auto scope = count_scope_from(t.Get("scope"));
            auto id = string_field(t, "id");
            auto range = obj(arg(info, 2), "a day range");
            auto from = day_from(range.Get("from"), "from");
            auto to = day_from(range.Get("to"), "to");
            return blocking(env,
                            [=](E& e) { return make_list(e.daily_counts(scope, id, from, to)); });
        }
        if (name == "setSoftBouncePolicy")
            return change(info, soft_bounce_policy_from, &E::set_soft_bounce_policy);
        if (name == "softBouncePolicy")
            return blocking(env, [](E& e) { return make_one(e.soft_bounces()); });
        if (name == "putPauseRule") return change(info, pause_rule_from, &E::put_pause_rule);
        if (name == "removePauseRule") {
            auto id = id_from(arg(info, 1));
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) { return make_bool(e.remove_pause_rule(who, id)); });
        }
        if (name == "pauseRules")
            return blocking(env, [](E& e) { return make_list(e.pause_rules()); });
        if (name == "checkPauseRules")
            return blocking(env, [](E& e) { return make_list(e.check_pause_rules()); });
        if (name == "auditLog") {
            std::uint64_t from = 1;
            if (arg(info, 1).IsNumber())
                from = static_cast<std::uint64_t>(info[1].As<Napi::Number>().DoubleValue());
            return blocking(env, [from](E& e) { return make_list(e.audit_log(from)); });
        }
        if (name == "verifyAudit") {
            std::optional<mailers::audit_head> cp;
            if (arg(info, 1).IsObject()) cp = audit_head_from(info[1]);
            return blocking(env, [cp](E& e) -> maker {
                std::uint64_t bad = 0;
                auto ec = cp ? e.verify_audit(*cp, &bad) : e.verify_audit(&bad);
                return [ec, bad](Napi::Env env) -> Napi::Value {
                    auto o = Napi::Object::New(env);
                    o.Set("ok", Napi::Boolean::New(env, !ec));
                    o.Set("badSeq",
                          ec ? Napi::Value(Napi::Number::New(env, static_cast<double>(bad)))
                             : env.Null());
                    return o;
                };
            });
        }
        if (name == "auditCheckpoint")
            return blocking(env, [](E& e) { return make_one(e.audit_checkpoint()); });
        if (name == "verifySuppressions")
            return blocking(env, [](E& e) { return make_one(e.verify_suppressions()); });
        if (name == "stats") return blocking(env, [](E& e) { return make_one(e.stats()); });
        if (name == "flush")
            return blocking(env, [](E& e) -> maker {
                e.flush();
                return {};
            });
        if (name == "cancel")
            return blocking(env, [](E& e) -> maker {
                e.cancel();
                return {};
            });
        if (name == "queueCounts")
            return blocking(env, [](E& e) { return make_one(e.queue_counts()); });
        if (name == "queued") {
            mailers::queue_filter f;
            auto o = arg(info, 1);
            if (o.IsObject()) {
                auto oo = o.As<Napi::Object>();
                if (has(oo, "state")) {
                    auto s = string_field(oo, "state");
                    for (int i = 0; i < 4; ++i)
                        if (mailers::to_string(static_cast<mailers::queue_state>(i)) == s)
                            f.state = static_cast<mailers::queue_state>(i);
                    if (!f.state)
                        throw Napi::TypeError::New(
                            env, "state must be one of: waiting, claimed, done, cancelled");
                }
                f.origin_prefix = string_field(oo, "originPrefix");
                if (auto n = number_field(oo, "afterId"))
                    f.after_id = static_cast<std::uint64_t>(*n);
                if (auto n = number_field(oo, "limit")) f.limit = static_cast<std::size_t>(*n);
            }
            return blocking(env, [f](E& e) { return make_list(e.queued(f)); });
        }
        if (name == "findQueued") {
            auto id = number_id_from(arg(info, 1));
            return blocking(env, [id](E& e) { return make_optional(e.find_queued(id)); });
        }
        if (name == "cancelQueued") {
            if (!arg(info, 1).IsNumber()) throw Napi::TypeError::New(env, "id must be a number");
            auto id = static_cast<std::uint64_t>(info[1].As<Napi::Number>().DoubleValue());
            auto who = actor_arg(info, 2);
            return blocking(env, [id, who](E& e) { return make_bool(e.cancel_queued(who, id)); });
        }
        if (name == "ingestWebhook") {
            auto provider = webhook_provider_from(arg(info, 1));
            auto req = std::make_shared<owned_webhook_request>(webhook_request_from(arg(info, 2)));
            auto params = webhook_params_from(arg(info, 3));
            params.mailgun.replay = host_->replay;
            return blocking(env, [=](E& e) {
                return make_one(e.ingest_webhook(provider, req->view(), params));
            });
        }
        if (name == "applyWebhook") {
            auto parsed = parsed_webhook_from(arg(info, 1));
            return blocking(env, [parsed](E& e) {
                return make_one(e.apply_webhook(parsed.first, parsed.second));
            });
        }
        if (name == "unsubscribe") {
            auto token = string_arg(info, 1, "token");
            return blocking(env, [token](E& e) { return make_one(e.unsubscribe(token)); });
        }
        if (name == "putRole") return change(info, role_from, &E::put_role);
        if (name == "grantAccess") return change(info, grant_from, &E::grant_access);
        if (name == "revokeAccess") return change(info, grant_from, &E::revoke_access);
        if (name == "removeRole") return change(info, id_from, &E::remove_role);
        if (name == "accessControl")
            return blocking(env, [](E& e) { return make_one(e.access_control()); });
        if (name == "latencies") return blocking(env, [](E& e) { return make_one(e.latencies()); });
        if (name == "erasePerson") {
            auto address = string_arg(info, 1, "address");
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) { return make_one(e.erase_person(who, address)); });
        }
        if (name == "exportPerson") {
            auto address = string_arg(info, 1, "address");
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) { return make_string(e.export_person(who, address)); });
        }
        if (name == "purgeRetained") {
            auto policy = retention_policy_from(arg(info, 1));
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) { return make_one(e.purge_retained(who, policy)); });
        }
        if (name == "setAccessControl") {
            bool on = arg(info, 1).ToBoolean().Value();
            auto who = actor_arg(info, 2);
            return blocking(env, [on, who](E& e) -> maker {
                e.set_access_control(who, on);
                return {};
            });
        }
        if (auto r = dispatch_workflow(env, name, info)) return *r;
        throw Napi::TypeError::New(env, "no such engine call: " + name);
    }

    // Sequences, enrollments, campaigns, forecasts, outbound webhooks.
    std::optional<Napi::Value> dispatch_workflow(Napi::Env env, const std::string& name,
                                                 const Napi::CallbackInfo& info) {
        using E = mailers::engine;
        if (name == "upsertSequence") {
            auto cfg = sequence_from(arg(info, 1));
            auto who = actor_arg(info, 2);
            return blocking(env, [cfg, who](E& e) -> maker {
                try {
                    e.upsert_sequence(who, cfg);
                } catch (const mailers::exception& x) {
                    throw located(x, [&] { return locate_sequence_error(cfg); });
                }
                return {};
            });
        }
        if (name == "removeSequence") return change(info, id_from, &E::remove_sequence);
        if (name == "sequence") {
            auto id = id_from(arg(info, 1));
            return blocking(env, [id](E& e) -> maker {
                auto s = e.find_sequence(id);
                return make_optional(s ? std::optional(s->config()) : std::nullopt);
            });
        }
        if (name == "sequences")
            return blocking(env, [](E& e) { return make_list(e.sequences()); });
        if (name == "enroll") {
            auto seq = id_from(arg(info, 1));
            auto contact = address_from(arg(info, 2), "contact");
            auto opts = enroll_options_from(arg(info, 3));
            auto who = actor_arg(info, 3);
            return blocking(env, [=](E& e) { return make_one(e.enroll(who, seq, contact, opts)); });
        }
        if (name == "pauseEnrollment" || name == "resumeEnrollment") {
            auto id = number_id_from(arg(info, 1));
            auto who = actor_arg(info, 2);
            bool pause = name == "pauseEnrollment";
            return blocking(env, [=](E& e) {
                return make_bool(pause ? e.pause_enrollment(who, id)
                                       : e.resume_enrollment(who, id));
            });
        }
        if (name == "stopEnrollment") {
            auto id = number_id_from(arg(info, 1));
            auto why = option(info, 2, "reason");
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) { return make_bool(e.stop_enrollment(who, id, why)); });
        }
        if (name == "resolveUnknownStep") {
            static constexpr std::array<std::string_view, 2> resolutions = {"sent", "not_sent"};
            auto id = number_id_from(arg(info, 1));
            auto what = named_from<mailers::step_resolution>(arg(info, 2), "resolution", resolutions);
            auto who = actor_arg(info, 3);
            return blocking(env,
                            [=](E& e) { return make_bool(e.resolve_unknown_step(who, id, what)); });
        }
        if (name == "enrollment") {
            auto id = number_id_from(arg(info, 1));
            return blocking(env, [id](E& e) { return make_optional(e.find_enrollment(id)); });
        }
        if (name == "enrollments") {
            auto f = enrollment_filter_from(arg(info, 1));
            return blocking(env, [f](E& e) { return make_list(e.enrollments(f)); });
        }
        if (name == "pauseSequence") return change_with_reason(info, &E::pause_sequence);
        if (name == "resumeSequence") return change(info, id_from, &E::resume_sequence);
        if (name == "isSequencePaused") {
            auto id = id_from(arg(info, 1));
            return blocking(env, [id](E& e) { return make_bool(e.is_sequence_paused(id)); });
        }
        if (name == "recordReply") {
            auto from = string_arg(info, 1, "from");
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) { return make_ids(e.record_reply(who, from)); });
        }
        if (name == "recordGoal") {
            auto address = string_arg(info, 1, "address");
            auto seq = string_arg(info, 2, "sequence id");
            auto who = actor_arg(info, 3);
            return blocking(env, [=](E& e) { return make_ids(e.record_goal(who, address, seq)); });
        }
        if (name == "nextDue")
            return blocking(env, [](E& e) -> maker {
                auto t = e.next_due();
                // A Date holds whole milliseconds. Rounded down, a due time
                // between two of them would be one setTime() cannot reach,
                // and settle() would wait on it for ever; rounded up, it is
                // reached.
                if (t) *t = std::chrono::ceil<std::chrono::milliseconds>(*t);
                return [t](Napi::Env env) { return to_js(env, t); };
            });
        if (name == "startCampaign") {
            auto cfg = campaign_from(arg(info, 1));
            auto who = actor_arg(info, 2);
            return blocking(env, [cfg = std::move(cfg), who](E& e) {
                try {
                    return make_one(e.start_campaign(who, cfg));
                } catch (const mailers::exception& x) {
                    throw located(x, [&] { return locate_template_error(cfg.content); });
                }
            });
        }
        if (name == "cancelCampaign") {
            auto id = id_from(arg(info, 1));
            auto who = actor_arg(info, 2);
            return blocking(env, [id, who](E& e) {
                return make_number(static_cast<double>(e.cancel_campaign(who, id)));
            });
        }
        if (name == "campaignProgress") {
            auto id = id_from(arg(info, 1));
            return blocking(env, [id](E& e) { return make_one(e.campaign_progress(id)); });
        }
        if (name == "campaign")
            return query(info, &E::find_campaign, make_optional<mailers::campaign_info>);
        if (name == "campaigns")
            return blocking(env, [](E& e) { return make_list(e.campaigns()); });
        if (name == "forecast") {
            auto req = forecast_from(arg(info, 1));
            return blocking(env, [req = std::move(req)](E& e) {
                try {
                    return make_one(e.forecast(req));
                } catch (const mailers::exception& x) {
                    throw located(x, [&] {
                        return req.campaign ? locate_template_error(req.campaign->content)
                                            : std::nullopt;
                    });
                }
            });
        }
        if (name == "putWebhookEndpoint") {
            auto ep = webhook_endpoint_from(arg(info, 1));
            auto who = actor_arg(info, 2);
            return blocking(env,
                            [ep, who](E& e) { return make_one(e.put_webhook_endpoint(who, ep)); });
        }
        if (name == "removeWebhookEndpoint") {
            auto id = id_from(arg(info, 1));
            auto who = actor_arg(info, 2);
            return blocking(
                env, [id, who](E& e) { return make_bool(e.remove_webhook_endpoint(who, id)); });
        }
        if (name == "disableWebhookEndpoint")
            return change_with_reason(info, &E::disable_webhook_endpoint);
        if (name == "enableWebhookEndpoint") {
            auto id = id_from(arg(info, 1));
            auto o = arg(info, 2);
            bool retry = false;
            mailers::time_point since{};
            if (o.IsObject()) {
                auto oo = o.As<Napi::Object>();
                retry = bool_field(oo, "retryFailed", false);
                if (has(oo, "failedSince")) since = time_from(oo.Get("failedSince"), "failedSince");
            }
            auto who = actor_arg(info, 2);
            return blocking(env, [=](E& e) -> maker {
                e.enable_webhook_endpoint(who, id, retry, since);
                return {};
            });
        }
        if (name == "webhookEndpoints")
            return blocking(env, [](E& e) { return make_list(e.webhook_endpoints()); });
        if (name == "webhookEndpoint")
            return query(info, &E::find_webhook_endpoint, make_optional<mailers::webhook_endpoint>);
        if (name == "webhookDeliveries") {
            auto f = webhook_delivery_filter_from(arg(info, 1));
            return blocking(env, [f](E& e) { return make_list(e.webhook_deliveries(f)); });
        }
        if (name == "webhookDeliveryCounts") {
            auto v = arg(info, 1);
            std::string endpoint;
            if (!v.IsUndefined() && !v.IsNull()) endpoint = id_from(v);
            return blocking(
                env, [endpoint](E& e) { return make_one(e.count_webhook_deliveries(endpoint)); });
        }
        if (name == "ingestDeliveryReport") {
            auto v = arg(info, 1);
            std::string msg;
            if (v.IsBuffer())
                msg.assign(v.As<Napi::Buffer<char>>().Data(), v.As<Napi::Buffer<char>>().Length());
            else if (v.IsString())
                msg = v.As<Napi::String>().Utf8Value();
            else
                throw Napi::TypeError::New(env, "message must be a string or a Buffer");
            return blocking(env, [msg = std::move(msg)](E& e) {
                return make_one(e.ingest_delivery_report(msg));
            });
        }
        if (name == "metricsText")
            return blocking(env, [](E& e) { return make_string(e.metrics_text()); });
        return std::nullopt;
    }

    // The engine's refusal of a template, with where it went wrong when
    // `locate` finds that.
    template <class Locate>
    static failure_info located(const mailers::exception& x, Locate locate) {
        failure_info f{x.code(), x.diag(), x.what(), {}};
        if (x.code() == mailers::errc::invalid_argument) f.where = locate();
        return f;
    }

    // --- events and test helpers -------------------------------------------------

    void emit(Napi::Env env, const mailers::event& e) {
        auto fn = Value().Get("_emit");
        if (!fn.IsFunction()) return;
        // lib/engine.js catches what listeners throw; a throw that still
        // escapes is reported by the dispatcher.
        fn.As<Napi::Function>().Call(Value(), {to_js(env, e)});
    }

    Napi::Value set_listening(const Napi::CallbackInfo& info) {
        listening_.store(info.Length() > 0 && info[0].ToBoolean().Value());
        return info.Env().Undefined();
    }

    // What a capture provider holds (synchronous: it is in memory).
    Napi::Value captured(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        auto id = string_arg(info, 0, "provider id");
        std::shared_ptr<mailers::capture_transport> cap;
        {
            std::lock_guard lock(captures_mutex_);
            auto it = host_->captures.find(id);
            if (it != host_->captures.end()) cap = it->second;
        }
        if (!cap) throw Napi::Error::New(env, "no capture provider named " + id);
        bool clear = info.Length() > 1 && info[1].ToBoolean().Value();
        auto sent = cap->sent();
        if (clear) cap->clear();
        auto a = Napi::Array::New(env, sent.size());
        for (std::size_t i = 0; i < sent.size(); ++i)
            a.Set(static_cast<uint32_t>(i), to_js(env, sent[i]));
        return a;
    }

    // The engine's clock, when it was opened with `manualClock` (demos and
    // tests fast-forward through a day with it).
    Napi::Value set_time(const Napi::CallbackInfo& info) {
        auto env = info.Env();
        if (!clock_) throw Napi::Error::New(env, "setTime needs an engine opened with manualClock");
        double ms = info[0].IsDate() ? info[0].As<Napi::Date>().ValueOf()
                                     : info[0].ToNumber().DoubleValue();
        clock_->set(
            mailers::time_point(std::chrono::microseconds(static_cast<std::int64_t>(ms * 1000.0))));
        return env.Undefined();
    }
    Napi::Value now(const Napi::CallbackInfo& info) {
        if (clock_) return to_js(info.Env(), clock_->now());
        return to_js(info.Env(), std::chrono::time_point_cast<std::chrono::microseconds>(
                                     std::chrono::system_clock::now()));
    }

    Napi::Value pending(const Napi::CallbackInfo& info) {
        return Napi::Number::New(info.Env(), static_cast<double>(disp_->holds()));
    }

    static inline std::mutex captures_mutex_;
    Napi::ObjectReference options_;
    Napi::ObjectReference close_promise_;
    std::shared_ptr<dispatcher> disp_;
    std::shared_ptr<host> host_;
    mailers::principal actor_ = mailers::principal::system();
    std::shared_ptr<mailers::manual_clock> clock_;
    std::atomic<bool> listening_{false};
    bool started_ = false;
    bool closing_ = false;
};

// parseWebhook(provider, request, options): verified and read, not
// applied. The result carries the native one, hidden, for applyWebhook.
// Mailgun tokens seen by it are remembered process-wide.
Napi::Value parse_webhook_js(const Napi::CallbackInfo& info) {
    static const auto replay = std::make_shared<mailers::memory_replay_cache>();
    auto env = info.Env();
    auto at = [&](std::size_t i) { return info.Length() > i ? info[i] : env.Undefined(); };
    auto provider = webhook_provider_from(at(0));
    auto req = webhook_request_from(at(1));
    auto params = webhook_params_from(at(2));
    params.mailgun.replay = replay;
    auto parsed = mailers::parse_webhook(provider, req.view(), params);
    auto o = to_js(env, parsed);
    o.Set("provider", str(env, mailers::to_string(provider)));
    auto native = Napi::External<mailers::webhook_result>::New(
        env, new mailers::webhook_result(std::move(parsed)),
        [](Napi::Env, mailers::webhook_result* r) { delete r; });
    o.DefineProperty(Napi::PropertyDescriptor::Value("_parsed", native, napi_default));
    return o;
}

Napi::Value live_count(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), live_engines.load());
}

// The library's presets, so that a rule built from one in JS matches C++.
template <mailers::pause_rule (*Preset)(std::string, mailers::pause_scope),
          mailers::pause_scope Default>
Napi::Value preset(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    if (info.Length() < 1 || !info[0].IsString())
        throw Napi::TypeError::New(env, "id must be a string");
    auto scope = pause_scope_from(info.Length() > 1 ? info[1] : env.Undefined(), Default);
    return to_js(env, Preset(info[0].As<Napi::String>().Utf8Value(), scope));
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
    exports.Set("bounceRatePreset",
                Napi::Function::New(
                    env, preset<mailers::bounce_rate_preset, mailers::pause_scope::mailbox>));
    exports.Set(
        "complaintRatePreset",
        Napi::Function::New(
            env, preset<mailers::complaint_rate_preset, mailers::pause_scope::sender_domain>));
    exports.Set("parseWebhook", Napi::Function::New(env, parse_webhook_js));
    init_utilities(env, exports);
    exports.Set("NativeEngine", native_engine::define(env));
    exports.Set("liveEngines", Napi::Function::New(env, live_count));
    exports.Set("version", Napi::String::New(env, std::to_string(mailers::version_major) + "." +
                                                      std::to_string(mailers::version_minor) + "." +
                                                      std::to_string(mailers::version_patch)));
    return exports;
}

}  // namespace
}  // namespace mailers_node

static Napi::Object mailers_init(Napi::Env env, Napi::Object exports) {
    return mailers_node::init(env, exports);
}

NODE_API_MODULE(mailers, mailers_init)
