// The one way work reaches JavaScript: any thread posts a closure, and the
// closures run in order on the JS thread, in batches, through one
// thread-safe function. One wake-up serves every closure posted before it
// runs, so a burst of completions costs one hop into the event loop.
//
// Closures run outside every engine lock: the engine's threads only ever
// append to the queue here.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace mailers_node {

class dispatcher : public std::enable_shared_from_this<dispatcher> {
public:
    using task = std::function<void(Napi::Env)>;

    explicit dispatcher(Napi::Env env) {
        tsfn_ = Napi::ThreadSafeFunction::New(
            env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "mailers", 0, 1);
        // Idle, the dispatcher does not keep the process alive; hold() and
        // unhold() count the operations that should.
        tsfn_.Unref(env);
    }

    /// From any thread. Dropped once the dispatcher is released: the
    /// environment is going away and nobody can be told any more.
    void post(task t) {
        std::lock_guard lock(mutex_);
        if (released_) return;
        queue_.push_back(std::move(t));
        if (scheduled_) return;
        scheduled_ = true;
        tsfn_.NonBlockingCall(
            [self = shared_from_this()](Napi::Env env, Napi::Function) { self->drain(env); });
    }

    /// JS thread only: an operation started / ended.
    void hold(Napi::Env env) {
        if (holds_++ == 0) tsfn_.Ref(env);
    }
    void unhold(Napi::Env env) {
        if (holds_ > 0 && --holds_ == 0) tsfn_.Unref(env);
    }
    std::size_t holds() const { return holds_; }

    /// Stops taking work and lets the thread-safe function go. Safe to call
    /// twice; from the JS thread or an environment cleanup hook.
    void release() {
        if (close_gate()) tsfn_.Release();
    }

    /// Stops taking work without touching the thread-safe function: for
    /// exit(), when Node's platform is already gone. Whatever is posted
    /// afterwards, and whatever was waiting, is dropped.
    void abandon() { close_gate(); }

private:
    // True for the caller that closed it.
    bool close_gate() {
        std::lock_guard lock(mutex_);
        if (released_) return false;
        released_ = true;
        queue_.clear();
        return true;
    }

    void drain(Napi::Env env) {
        std::vector<task> batch;
        {
            std::lock_guard lock(mutex_);
            batch.swap(queue_);
            scheduled_ = false;
        }
        // A null env: the environment is being torn down; nothing can run.
        if (env == nullptr) return;
        for (auto& t : batch) {
            Napi::HandleScope scope(env);
            try {
                t(env);
            } catch (const Napi::Error& e) {
                // Never lose the process to a throwing callback: report it.
                report(env, e.Value());
            } catch (const std::exception& e) {
                report(env, Napi::Error::New(env, e.what()).Value());
            }
        }
    }

    static void report(Napi::Env env, Napi::Value err) {
        try {
            auto process = env.Global().Get("process").As<Napi::Object>();
            auto warn = process.Get("emitWarning").As<Napi::Function>();
            warn.Call(process, {err});
        } catch (...) {
        }
    }

    std::mutex mutex_;
    std::vector<task> queue_;
    bool scheduled_ = false;
    bool released_ = false;
    std::size_t holds_ = 0;  // JS thread only
    Napi::ThreadSafeFunction tsfn_;
};

}  // namespace mailers_node
