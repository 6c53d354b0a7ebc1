#include "store/postgres/pg.hpp"

#include <charconv>
#include <cstring>
#include <optional>
#include <utility>

namespace mailers::pg {

namespace {

std::string trimmed(const char* s) {
    std::string m = s ? s : "";
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    return m;
}

// Server states after which the session cannot go on: the connection
// class (08), and the server shutting down or crashing (57P01..57P03).
bool ends_session(std::string_view sqlstate) {
    return sqlstate.starts_with("08") || sqlstate == "57P01" || sqlstate == "57P02" ||
           sqlstate == "57P03";
}

}  // namespace

std::int64_t result::i64(int row, int col) const {
    auto t = text(row, col);
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc{} || p != t.data() + t.size())
        throw error(failure_kind::other,
                    "unexpected integer from the server: '" + std::string{t} + "'");
    return v;
}

std::uint64_t result::affected() const {
    const char* n = PQcmdTuples(r_.get());
    if (!n || !*n) return 0;
    return std::strtoull(n, nullptr, 10);
}

std::vector<const char*> params::pointers() const {
    std::vector<const char*> out;
    out.reserve(values_.size());
    for (auto& v : values_) out.push_back(v.c_str());
    return out;
}

void text_array::push(std::string_view s) {
    if (!buf_.empty()) buf_ += ',';
    buf_ += '"';
    for (char ch : s) {
        if (ch == '"' || ch == '\\') buf_ += '\\';
        buf_ += ch;
    }
    buf_ += '"';
}

void int_array::push(std::int64_t v) {
    if (!buf_.empty()) buf_ += ',';
    buf_ += std::to_string(v);
}

std::vector<std::int64_t> parse_int_array(std::string_view t) {
    std::vector<std::int64_t> out;
    if (t.size() < 2 || t.front() != '{' || t.back() != '}')
        throw error(failure_kind::other, "unexpected array from the server");
    t = t.substr(1, t.size() - 2);
    while (!t.empty()) {
        std::int64_t v = 0;
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        if (ec != std::errc{}) throw error(failure_kind::other, "unexpected array from the server");
        out.push_back(v);
        t.remove_prefix(static_cast<std::size_t>(p - t.data()));
        if (!t.empty() && t.front() == ',') t.remove_prefix(1);
    }
    return out;
}

std::string redact(std::string text, const std::vector<std::string>& secrets) {
    for (auto& s : secrets) {
        if (s.empty()) continue;
        for (auto pos = text.find(s); pos != std::string::npos; pos = text.find(s, pos + 4))
            text.replace(pos, s.size(), "****");
    }
    return text;
}

std::string quote_ident(std::string_view name) {
    std::string out = "\"";
    for (char c : name) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + '"';
}

connection::connection(const std::string& conninfo, std::chrono::milliseconds connect_timeout,
                       const std::vector<std::string>& redact_list)
    : redact_(redact_list) {
    // libpq takes whole seconds; 0 would mean "wait forever".
    auto secs =
        std::max<long long>(1, std::chrono::ceil<std::chrono::seconds>(connect_timeout).count());
    std::string timeout = std::to_string(secs);
    // Ours come first so that the host's conninfo overrides them.
    const char* keys[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
    const char* values[] = {timeout.c_str(), "mailers", conninfo.c_str(), nullptr};
    c_.reset(PQconnectdbParams(keys, values, 1));
    if (!c_) throw error(failure_kind::other, "out of memory creating a PostgreSQL connection");
    // Notices ("relation already exists, skipping") are not for the host's stderr.
    PQsetNoticeProcessor(
        c_.get(), [](void*, const char*) {}, nullptr);
    if (PQstatus(c_.get()) != CONNECTION_OK) {
        std::string msg = redact(trimmed(PQerrorMessage(c_.get())), redact_);
        // Refusals that waiting will not cure are reported at once.
        bool refused = msg.find("authentication failed") != std::string::npos ||
                       msg.find("does not exist") != std::string::npos ||
                       msg.find("invalid") != std::string::npos ||
                       msg.find("no password supplied") != std::string::npos ||
                       msg.find("no pg_hba.conf entry") != std::string::npos ||
                       msg.find("missing") != std::string::npos;
        throw error(refused ? failure_kind::other : failure_kind::connection_lost, msg);
    }
    // Durability is part of the contract: a server or database configured
    // with synchronous_commit = off would lose acknowledged reservations.
    exec(
        "SELECT set_config('synchronous_commit', 'on', false) "
        "WHERE current_setting('synchronous_commit') = 'off'");
}

void connection::fail(PGresult* r, std::string_view what) {
    std::string state;
    std::string constraint;
    std::string msg;
    if (r) {
        if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) state = s;
        if (const char* c = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME)) constraint = c;
        msg = trimmed(PQresultErrorMessage(r));
    }
    if (msg.empty()) msg = trimmed(PQerrorMessage(c_.get()));
    if (msg.empty()) msg = std::string{what} + " failed";
    msg = redact(std::move(msg), redact_);
    if (PQstatus(c_.get()) != CONNECTION_OK || ends_session(state) ||
        (r == nullptr && state.empty()))
        throw error(failure_kind::connection_lost, msg, state);
    if (state == "40001" || state == "40P01")
        throw error(failure_kind::retry_transaction, msg, state);
    if (state == "23505")
        throw error(failure_kind::unique_violation, msg, state, std::move(constraint));
    throw error(failure_kind::other, msg, state);
}

void connection::exec(const std::string& sql) {
    query(sql);
}

result connection::query(const std::string& sql) {
    result r{PQexec(c_.get(), sql.c_str())};
    auto st = r.get() ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) fail(r.get(), "statement");
    return r;
}

result connection::run(const statement& st, const params& p) {
    if (!prepared_.contains(st.name)) {
        result r{PQprepare(c_.get(), st.name, st.sql.c_str(), 0, nullptr)};
        if (!r.get() || PQresultStatus(r.get()) != PGRES_COMMAND_OK) fail(r.get(), st.name);
        prepared_.insert(st.name);
    }
    auto ptrs = p.pointers();
    result r{PQexecPrepared(c_.get(), st.name, p.size(), ptrs.data(), nullptr, nullptr, 0)};
    auto s = r.get() ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) fail(r.get(), st.name);
    return r;
}

connection::pipeline::pipeline(connection& c) : c_(c) {
    if (PQenterPipelineMode(c_.raw()) != 1) c_.fail(nullptr, "entering pipeline mode");
    active_ = true;
}

connection::pipeline::~pipeline() {
    if (!active_) return;
    // Abandoned after a failure: drain what is left so the connection can
    // leave pipeline mode, or leave it broken for the pool to replace.
    if (PQstatus(c_.raw()) == CONNECTION_OK) {
        PQpipelineSync(c_.raw());
        for (int guard = 0; guard < 100000; ++guard) {
            PGresult* r = PQgetResult(c_.raw());
            if (!r) {
                if (PQpipelineStatus(c_.raw()) == PQ_PIPELINE_OFF) break;
                if (PQexitPipelineMode(c_.raw()) == 1) break;
                if (PQstatus(c_.raw()) != CONNECTION_OK) break;
                continue;
            }
            PQclear(r);
        }
    }
    PQexitPipelineMode(c_.raw());
}

std::size_t connection::pipeline::add(const statement& st, const params& p) {
    if (!c_.prepared_.contains(st.name)) {
        bool queued = false;
        for (auto& e : expected_)
            if (e.is_prepare && e.name == st.name) queued = true;
        if (!queued) {
            if (PQsendPrepare(c_.raw(), st.name, st.sql.c_str(), 0, nullptr) != 1)
                c_.fail(nullptr, st.name);
            expected_.push_back({true, st.name});
        }
    }
    auto ptrs = p.pointers();
    if (PQsendQueryPrepared(c_.raw(), st.name, p.size(), ptrs.data(), nullptr, nullptr, 0) != 1)
        c_.fail(nullptr, st.name);
    expected_.push_back({false, st.name});
    return queries_++;
}

std::size_t connection::pipeline::add_simple(const char* sql) {
    if (PQsendQueryParams(c_.raw(), sql, 0, nullptr, nullptr, nullptr, nullptr, 0) != 1)
        c_.fail(nullptr, sql);
    expected_.push_back({false, sql});
    return queries_++;
}

std::vector<result> connection::pipeline::finish() {
    if (PQpipelineSync(c_.raw()) != 1) c_.fail(nullptr, "pipeline sync");
    std::vector<result> out;
    out.reserve(queries_);
    std::optional<error> first;
    std::size_t index = 0;
    for (auto& e : expected_) {
        if (!e.is_prepare) ++index;
        result r{PQgetResult(c_.raw())};
        if (!r.get()) {
            if (!first) {
                try {
                    c_.fail(nullptr, e.name);
                } catch (const error& x) {
                    first = x;
                    first->set_statement(static_cast<int>(e.is_prepare ? index : index - 1));
                }
            }
            break;
        }
        auto s = PQresultStatus(r.get());
        // Each query's results end with a null result.
        if (PGresult* end = PQgetResult(c_.raw())) PQclear(end);
        if (s == PGRES_PIPELINE_ABORTED) {
            if (!e.is_prepare) out.emplace_back();
            continue;
        }
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
            if (!first) {
                try {
                    c_.fail(r.get(), e.name);
                } catch (const error& x) {
                    first = x;
                    first->set_statement(static_cast<int>(e.is_prepare ? index : index - 1));
                }
            }
            if (!e.is_prepare) out.emplace_back();
            continue;
        }
        if (e.is_prepare)
            c_.prepared_.insert(e.name);
        else
            out.push_back(std::move(r));
    }
    if (!first || first->kind() != failure_kind::connection_lost) {
        result sync{PQgetResult(c_.raw())};
        if (!sync.get() || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
            if (!first) {
                try {
                    c_.fail(sync.get(), "pipeline sync");
                } catch (const error& x) {
                    first = x;
                }
            }
        } else {
            if (PQexitPipelineMode(c_.raw()) == 1) active_ = false;
        }
    }
    if (first) throw *first;
    if (active_) c_.fail(nullptr, "leaving pipeline mode");
    return out;
}

}  // namespace mailers::pg
