// A store that hands every call to another one. Derived stores override
// only the calls they change (the forecast adds a workspace's recent sends
// to a private store's load; tests refuse a commit or commit around an
// import), so every other operation, the queue's and the recorded keys'
// included, behaves as the inner store's.
#pragma once

#include <mailers/store.hpp>
#include <memory>
#include <utility>

namespace mailers::detail {

class forwarding_store : public mailers::store {
public:
    explicit forwarding_store(std::shared_ptr<mailers::store> inner) : inner_(std::move(inner)) {}

    using time_point = mailers::time_point;

    mailers::store_snapshot load(std::string_view ws, time_point since) override {
        return inner_->load(ws, since);
    }
    mailers::commit_result commit(std::string_view ws,
                                  std::span<const mailers::store_op> ops) override {
        return inner_->commit(ws, ops);
    }
    mailers::change_set changes_since(std::string_view ws, std::uint64_t after) override {
        return inner_->changes_since(ws, after);
    }
    mailers::suppression_import_result import_suppressions(
        std::string_view ws, const mailers::suppression_import& job) override {
        return inner_->import_suppressions(ws, job);
    }
    mailers::change_set changes_since_skipping(std::string_view ws, std::uint64_t after,
                                               std::uint64_t skip) override {
        return inner_->changes_since_skipping(ws, after, skip);
    }
    mailers::store_snapshot load_keys(
        std::string_view ws, time_point since,
        const std::function<void(mailers::suppression_kind, std::string_view)>& key) override {
        return inner_->load_keys(ws, since, key);
    }
    std::uint64_t attach(std::string_view ws, const mailers::member_info& info,
                         std::chrono::milliseconds lease) override {
        return inner_->attach(ws, info, lease);
    }
    bool renew(std::string_view ws, std::uint64_t member, std::chrono::milliseconds lease,
               std::uint64_t acked) override {
        return inner_->renew(ws, member, lease, acked);
    }
    void detach(std::string_view ws, std::uint64_t member) override { inner_->detach(ws, member); }
    std::vector<mailers::member_record> members(std::string_view ws) override {
        return inner_->members(ws);
    }
    std::size_t recover(std::string_view ws, std::span<const std::uint64_t> dead, time_point now,
                        std::string_view detail) override {
        return inner_->recover(ws, dead, now, detail);
    }
    std::optional<mailers::ledger_row> find_send(std::string_view ws, std::uint64_t id) override {
        return inner_->find_send(ws, id);
    }
    void for_each_suppression(
        std::string_view ws,
        const std::function<void(const mailers::suppression_entry&)>& fn) override {
        inner_->for_each_suppression(ws, fn);
    }
    void for_each_suppression_version(
        std::string_view ws,
        const std::function<void(const mailers::suppression_version&)>& fn) override {
        inner_->for_each_suppression_version(ws, fn);
    }
    std::optional<mailers::suppression_entry> find_suppression(std::string_view ws,
                                                               mailers::suppression_kind kind,
                                                               std::string_view value) override {
        return inner_->find_suppression(ws, kind, value);
    }
    std::uint64_t last_change_seq(std::string_view ws) override {
        return inner_->last_change_seq(ws);
    }
    std::optional<mailers::stored_object> find_object(std::string_view ws, std::string_view kind,
                                                      std::string_view id) override {
        return inner_->find_object(ws, kind, id);
    }
    std::optional<mailers::suppression_entry> next_suppression(std::string_view ws,
                                                               mailers::suppression_kind kind,
                                                               std::string_view from) override {
        return inner_->next_suppression(ws, kind, from);
    }
    std::uint64_t suppression_count(std::string_view ws) override {
        return inner_->suppression_count(ws);
    }
    void for_each_object(std::string_view ws, std::string_view kind,
                         const std::function<void(const mailers::stored_object&)>& fn) override {
        inner_->for_each_object(ws, kind, fn);
    }
    void for_each_audit(std::string_view ws, std::uint64_t from,
                        const std::function<void(const mailers::audit_record&)>& fn) override {
        inner_->for_each_audit(ws, from, fn);
    }
    void for_each_send(std::string_view ws, time_point from, time_point to,
                       const std::function<void(const mailers::ledger_row&)>& fn) override {
        inner_->for_each_send(ws, from, to, fn);
    }
    void purge_cap_uses(std::string_view ws, time_point before) override {
        inner_->purge_cap_uses(ws, before);
    }
    std::vector<mailers::queued_send> claim_queued(std::string_view ws, std::uint64_t member,
                                                   time_point now, std::size_t limit) override {
        return inner_->claim_queued(ws, member, now, limit);
    }
    std::optional<mailers::queued_send> find_queued(std::string_view ws,
                                                    std::uint64_t id) override {
        return inner_->find_queued(ws, id);
    }
    void for_each_queued(std::string_view ws, const mailers::queue_filter& filter,
                         const std::function<void(const mailers::queued_send&)>& fn) override {
        inner_->for_each_queued(ws, filter, fn);
    }
    mailers::queue_counts count_queued(std::string_view ws) override {
        return inner_->count_queued(ws);
    }
    std::size_t purge_queued(std::string_view ws, time_point before) override {
        return inner_->purge_queued(ws, before);
    }
    std::size_t purge_keys(std::string_view ws, time_point before) override {
        return inner_->purge_keys(ws, before);
    }
    bool forget_key(std::string_view ws, std::string_view ns, std::string_view key) override {
        return inner_->forget_key(ws, ns, key);
    }
    std::optional<mailers::enrollment> find_enrollment(std::string_view ws,
                                                       std::uint64_t id) override {
        return inner_->find_enrollment(ws, id);
    }
    std::optional<mailers::enrollment> find_enrollment_by_message(
        std::string_view ws, std::string_view message_id) override {
        return inner_->find_enrollment_by_message(ws, message_id);
    }
    void for_each_enrollment(std::string_view ws, const mailers::enrollment_filter& filter,
                             const std::function<void(const mailers::enrollment&)>& fn) override {
        inner_->for_each_enrollment(ws, filter, fn);
    }
    std::vector<mailers::enrollment> due_enrollments(std::string_view ws, time_point now,
                                                     std::size_t limit) override {
        return inner_->due_enrollments(ws, now, limit);
    }
    // --- erasure
    mailers::person_erasure_result erase_person(std::string_view ws,
                                                const mailers::person_erasure& erasure) override {
        return inner_->erase_person(ws, erasure);
    }
    std::size_t purge_sends(std::string_view ws, time_point before) override {
        return inner_->purge_sends(ws, before);
    }
    // --- end erasure
    std::vector<mailers::daily_count> daily_counts(std::string_view ws, mailers::count_scope scope,
                                                   std::string_view id, mailers::count_day from,
                                                   mailers::count_day to) override {
        return inner_->daily_counts(ws, scope, id, from, to);
    }
    std::size_t purge_counts(std::string_view ws, mailers::count_day before) override {
        return inner_->purge_counts(ws, before);
    }

protected:
    std::shared_ptr<mailers::store> inner_;
};

}  // namespace mailers::detail
