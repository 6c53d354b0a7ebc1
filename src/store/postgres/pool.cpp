#include "store/postgres/pool.hpp"

#include <utility>

namespace mailers::pg {

pool::pool(pool_params p) : params_(std::move(p)) {
    if (params_.size == 0) params_.size = 1;
}

pool::lease::~lease() {
    if (p_) p_->give_back(std::move(c_));
}

std::unique_ptr<connection> pool::connect() const {
    return std::make_unique<connection>(params_.conninfo, params_.connect_timeout, params_.redact);
}

pool::lease pool::acquire() {
    std::unique_ptr<connection> c;
    {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return lent_ < params_.size; });
        ++lent_;
        if (!idle_.empty()) {
            c = std::move(idle_.back());
            idle_.pop_back();
        }
    }
    if (c && c->broken()) c.reset();
    if (!c) {
        try {
            c = connect();
        } catch (...) {
            give_back(nullptr);
            throw;
        }
    }
    return lease{*this, std::move(c)};
}

void pool::give_back(std::unique_ptr<connection> c) noexcept {
    {
        std::lock_guard lock(m_);
        --lent_;
        // A connection still inside a transaction or pipeline was abandoned
        // half-way; closing it is simpler than guessing its state.
        if (c && !c->broken() && PQtransactionStatus(c->raw()) == PQTRANS_IDLE &&
            PQpipelineStatus(c->raw()) == PQ_PIPELINE_OFF)
            idle_.push_back(std::move(c));
    }
    cv_.notify_one();
}

}  // namespace mailers::pg
