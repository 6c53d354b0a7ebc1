// A thin RAII layer over libpq: connections with per-connection prepared
// statements, pipelines, results, and the mapping of failures onto what the
// store does about them (retry, reconnect, or report).
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace mailers::pg {

/// Why a statement failed, as far as the caller's next step is concerned.
enum class failure_kind {
    /// The connection is gone. Whether anything was committed depends on
    /// how far the caller got; the caller decides.
    connection_lost,
    /// 40001 / 40P01: the transaction was rolled back and may run again.
    retry_transaction,
    /// 23505: a unique index refused a row. Callers that raced another
    /// process on purpose (idempotency keys) retry; others report it.
    unique_violation,
    /// Anything else the server or libpq said.
    other,
};

class error : public std::runtime_error {
public:
    error(failure_kind kind, std::string message, std::string sqlstate = {},
          std::string constraint = {})
        : std::runtime_error(std::move(message)),
          kind_(kind),
          sqlstate_(std::move(sqlstate)),
          constraint_(std::move(constraint)) {}
    failure_kind kind() const noexcept { return kind_; }
    /// Empty when libpq, not the server, noticed the failure.
    const std::string& sqlstate() const noexcept { return sqlstate_; }
    /// The constraint (or unique index) the server names as refusing a row,
    /// so callers need not parse its message, whose wording is localised.
    const std::string& constraint() const noexcept { return constraint_; }
    /// In a pipeline: the index of the statement that failed (-1 when the
    /// failure was not tied to one).
    int statement() const noexcept { return statement_; }
    void set_statement(int i) noexcept { statement_ = i; }

private:
    failure_kind kind_;
    std::string sqlstate_;
    std::string constraint_;
    int statement_ = -1;
};

struct result_deleter {
    void operator()(PGresult* r) const noexcept { PQclear(r); }
};

class result {
public:
    result() = default;
    explicit result(PGresult* r) : r_(r) {}
    PGresult* get() const noexcept { return r_.get(); }
    int rows() const noexcept { return r_ ? PQntuples(r_.get()) : 0; }
    bool is_null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
    std::string_view text(int row, int col) const {
        return {PQgetvalue(r_.get(), row, col),
                static_cast<std::size_t>(PQgetlength(r_.get(), row, col))};
    }
    std::string str(int row, int col) const { return std::string{text(row, col)}; }
    std::int64_t i64(int row, int col) const;
    std::uint64_t u64(int row, int col) const { return static_cast<std::uint64_t>(i64(row, col)); }
    bool boolean(int row, int col) const { return text(row, col) == "t"; }
    /// Rows changed by an INSERT / UPDATE / DELETE.
    std::uint64_t affected() const;

private:
    std::unique_ptr<PGresult, result_deleter> r_;
};

/// Text-format parameters.
class params {
public:
    params& add(std::string v) {
        values_.emplace_back(std::move(v));
        return *this;
    }
    params& add(std::string_view v) { return add(std::string{v}); }
    params& add(const char* v) { return add(std::string{v}); }
    params& add(std::int64_t v) { return add(std::to_string(v)); }
    params& add(std::uint64_t v) { return add(std::to_string(static_cast<std::int64_t>(v))); }
    params& add(int v) { return add(std::to_string(v)); }
    int size() const noexcept { return static_cast<int>(values_.size()); }
    /// Pointers into this object, valid while it lives unchanged.
    std::vector<const char*> pointers() const;

private:
    std::vector<std::string> values_;
};

/// Builders for PostgreSQL array literals, sent as text parameters.
class text_array {
public:
    void push(std::string_view s);
    void push_null() { buf_ += buf_.empty() ? "NULL" : ",NULL"; }
    std::string str() const { return buf_.empty() ? "{}" : "{" + buf_ + "}"; }
    bool empty() const noexcept { return buf_.empty(); }

private:
    std::string buf_;
};

class int_array {
public:
    void push(std::int64_t v);
    std::string str() const { return buf_.empty() ? "{}" : "{" + buf_ + "}"; }

private:
    std::string buf_;
};

/// Parses a one-dimensional bigint array as the server prints it.
std::vector<std::int64_t> parse_int_array(std::string_view text);

/// A statement known by a stable name; prepared on each connection the
/// first time that connection runs it.
struct statement {
    const char* name;
    std::string sql;
};

struct conn_deleter {
    void operator()(PGconn* c) const noexcept { PQfinish(c); }
};

class connection {
public:
    /// Connects; throws error(connection_lost) when the server cannot be
    /// reached, error(other) for refusals (authentication, bad options).
    /// Messages never contain `password`.
    connection(const std::string& conninfo, std::chrono::milliseconds connect_timeout,
               const std::vector<std::string>& redact);

    bool broken() const noexcept { return PQstatus(c_.get()) != CONNECTION_OK; }
    PGconn* raw() const noexcept { return c_.get(); }

    /// Runs SQL with no parameters (several statements allowed).
    void exec(const std::string& sql);
    /// Runs one unprepared statement and returns its rows.
    result query(const std::string& sql);
    /// Runs a prepared statement, preparing it first on this connection.
    result run(const statement& st, const params& p);

    /// The statements of one pipeline: queued, then sent with one sync and
    /// read back in order. A failure aborts the rest of the pipeline, as
    /// the server does; `finish` throws the first failure.
    class pipeline {
    public:
        explicit pipeline(connection& c);
        ~pipeline();
        pipeline(const pipeline&) = delete;
        pipeline& operator=(const pipeline&) = delete;
        /// Queues a statement; returns its index among the results.
        std::size_t add(const statement& st, const params& p);
        /// Queues a statement without parameters through the simple protocol
        /// (BEGIN, COMMIT ...).
        std::size_t add_simple(const char* sql);
        /// Sends everything and reads every result; throws the first
        /// failure, with the index of the statement that caused it.
        std::vector<result> finish();

    private:
        connection& c_;
        struct pending {
            bool is_prepare;
            std::string name;
        };
        std::vector<pending> expected_;
        std::size_t queries_ = 0;
        bool active_ = false;
    };

private:
    friend class pipeline;
    [[noreturn]] void fail(PGresult* r, std::string_view what);
    std::unique_ptr<PGconn, conn_deleter> c_;
    std::unordered_set<std::string> prepared_;
    std::vector<std::string> redact_;
};

/// Replaces every occurrence of each secret in `text` by "****".
std::string redact(std::string text, const std::vector<std::string>& secrets);

/// Quotes an identifier ("my schema" -> "\"my schema\"").
std::string quote_ident(std::string_view name);

}  // namespace mailers::pg
