#include <mailers/error.hpp>
#include <mailers/store_replay_cache.hpp>
#include <utility>
#include <vector>

namespace mailers {

store_replay_cache::store_replay_cache(std::shared_ptr<store> storage, std::string workspace)
    : store_(std::move(storage)), workspace_(std::move(workspace)) {
    if (!store_)
        throw exception(make_error_code(errc::invalid_argument), "store_replay_cache: no store");
}

bool store_replay_cache::do_first_use(std::string_view token, time_point expires_at,
                                      time_point now) {
    const std::vector<store_op> ops{
        store_ops::record_key{"mailgun-token", std::string(token), now, expires_at, 0}};
    return store_->commit(workspace_, ops).ops.at(0).applied;
}

void store_replay_cache::do_release(std::string_view token) {
    store_->forget_key(workspace_, "mailgun-token", token);
}

}  // namespace mailers
