// A completion token adapter that keeps a failed send's result when the
// error becomes an exception.
//
// `engine::async_send` completes with `void(error_code, send_result)`. A
// token that turns the error code into an exception (`use_awaitable`,
// `use_future`, a coroutine library's token) throws a plain
// `boost::system::system_error` and drops the `send_result`: the mailbox,
// the ledger id, `retry_at` for errc::no_capacity and the provider's
// diagnostics. Wrapping the token keeps them:
//
//     try {
//         send_result r = co_await eng.async_send(req, mailers::with_result(asio::use_awaitable));
//     } catch (const mailers::send_error& e) {
//         if (e.code() == mailers::errc::no_capacity) schedule(req, *e.result().retry_at);
//     }
//
// Or, without exceptions, `asio::as_tuple(asio::use_awaitable)` gives the
// error code and the result side by side.
#pragma once

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <exception>
#include <mailers/engine.hpp>
#include <mailers/error.hpp>
#include <type_traits>
#include <utility>

namespace mailers {

/// The exception a send that failed completes with through `with_result`.
/// `code()` is the handler's error code, `diag()` the result's diagnostics
/// and `result()` the whole result.
class send_error : public exception {
public:
    send_error(error_code ec, send_result result)
        : exception(ec, result.diag), result_(std::move(result)) {}
    const send_result& result() const noexcept { return result_; }

private:
    send_result result_;
};

/// A completion token: `CompletionToken` completed with
/// `void(std::exception_ptr, send_result)` instead of
/// `void(error_code, send_result)`. The pointer is null on success, and holds
/// a `send_error` with a copy of the result on failure; the handler receives
/// the result either way. Executor, allocator and cancellation slot are the
/// wrapped token's handler's.
template <class CompletionToken>
struct with_result_t {
    CompletionToken token;
};

/// Wraps `token`; see `with_result_t`.
template <class CompletionToken>
with_result_t<std::decay_t<CompletionToken>> with_result(CompletionToken&& token) {
    return {std::forward<CompletionToken>(token)};
}

namespace detail {
template <class Handler>
struct send_error_handler {
    Handler handler;

    void operator()(error_code ec, send_result result) {
        std::exception_ptr failure;
        if (ec) failure = std::make_exception_ptr(send_error(ec, result));
        std::move(handler)(std::move(failure), std::move(result));
    }
};
}  // namespace detail

}  // namespace mailers

namespace boost::asio {

template <class CompletionToken>
struct async_result<mailers::with_result_t<CompletionToken>,
                    void(mailers::error_code, mailers::send_result)>
    : async_result<CompletionToken, void(std::exception_ptr, mailers::send_result)> {
    using base_async_result =
        async_result<CompletionToken, void(std::exception_ptr, mailers::send_result)>;

    template <class Initiation>
    struct init_wrapper {
        Initiation initiation;

        template <class Handler, class... Args>
        void operator()(Handler&& handler, Args&&... args) {
            std::move(initiation)(
                mailers::detail::send_error_handler<std::decay_t<Handler>>{
                    std::forward<Handler>(handler)},
                std::forward<Args>(args)...);
        }
    };

    // Through async_initiate rather than base_async_result::initiate: tokens
    // such as use_future in Boost 1.81 still have the older async_result
    // shape, without initiate().
    template <class Initiation, class RawCompletionToken, class... Args>
    static auto initiate(Initiation&& initiation, RawCompletionToken&& token, Args&&... args) {
        using inner_token =
            std::conditional_t<std::is_const_v<std::remove_reference_t<RawCompletionToken>>,
                               const CompletionToken, CompletionToken>;
        return async_initiate<inner_token, void(std::exception_ptr, mailers::send_result)>(
            init_wrapper<std::decay_t<Initiation>>{std::forward<Initiation>(initiation)},
            token.token, std::forward<Args>(args)...);
    }
};

template <template <class, class> class Associator, class Handler, class DefaultCandidate>
struct associator<Associator, mailers::detail::send_error_handler<Handler>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type get(
        const mailers::detail::send_error_handler<Handler>& h) noexcept {
        return Associator<Handler, DefaultCandidate>::get(h.handler);
    }
    static auto get(const mailers::detail::send_error_handler<Handler>& h,
                    const DefaultCandidate& c) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
        return Associator<Handler, DefaultCandidate>::get(h.handler, c);
    }
};

}  // namespace boost::asio
