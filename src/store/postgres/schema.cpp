#include "store/postgres/schema.hpp"

#include <fmt/format.h>

#include <mailers/error.hpp>
#include <string_view>

namespace mailers::pg {

namespace {

// Every text column that is compared or ordered uses the "C" collation:
// keys are opaque byte strings, and byte order is the documented order.
// Times are microseconds since the epoch, as the library's time_point.
constexpr std::string_view step_1 = R"sql(
CREATE TABLE {s}.workspaces (
  workspace   text COLLATE "C" PRIMARY KEY,
  change_seq  bigint NOT NULL DEFAULT 0,
  audit_seq   bigint NOT NULL DEFAULT 0,
  audit_hash  text NOT NULL DEFAULT ''
);
CREATE SEQUENCE {s}.send_ids;
CREATE SEQUENCE {s}.member_ids;
CREATE TABLE {s}.sends (
  workspace           text COLLATE "C" NOT NULL,
  id                  bigint NOT NULL,
  idempotency_key     text COLLATE "C" NOT NULL,
  mailbox             text NOT NULL,
  provider            text NOT NULL,
  pool                text NOT NULL,
  recipient           text NOT NULL,
  message_id          text NOT NULL,
  state               smallint NOT NULL,
  attempt             bigint NOT NULL,
  reserved_at         bigint NOT NULL,
  updated_at          bigint NOT NULL,
  provider_message_id text NOT NULL,
  detail              text NOT NULL,
  owner               bigint NOT NULL,
  PRIMARY KEY (workspace, id)
);
CREATE UNIQUE INDEX sends_idempotency ON {s}.sends (workspace, idempotency_key)
  WHERE idempotency_key <> '';
CREATE INDEX sends_reserved_at ON {s}.sends (workspace, reserved_at);
CREATE INDEX sends_open ON {s}.sends (workspace, owner) WHERE state = 0;
CREATE TABLE {s}.cap_keys (
  workspace text COLLATE "C" NOT NULL,
  key       text COLLATE "C" NOT NULL,
  gap_until bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (workspace, key)
);
CREATE TABLE {s}.cap_uses (
  workspace text COLLATE "C" NOT NULL,
  key       text COLLATE "C" NOT NULL,
  at        bigint NOT NULL,
  send_id   bigint NOT NULL
);
CREATE INDEX cap_uses_window ON {s}.cap_uses (workspace, key, at);
CREATE INDEX cap_uses_send ON {s}.cap_uses (workspace, send_id);
CREATE TABLE {s}.objects (
  workspace text COLLATE "C" NOT NULL,
  kind      text COLLATE "C" NOT NULL,
  id        text COLLATE "C" NOT NULL,
  json      text,
  seq       bigint NOT NULL,
  PRIMARY KEY (workspace, kind, id)
);
CREATE INDEX objects_seq ON {s}.objects (workspace, seq);
CREATE TABLE {s}.suppressions (
  workspace  text COLLATE "C" NOT NULL,
  kind       smallint NOT NULL,
  value      text COLLATE "C" NOT NULL,
  reason     smallint,
  source     text NOT NULL,
  created_at bigint NOT NULL,
  seq        bigint NOT NULL,
  PRIMARY KEY (workspace, kind, value)
);
CREATE INDEX suppressions_seq ON {s}.suppressions (workspace, seq);
CREATE TABLE {s}.audit (
  workspace     text COLLATE "C" NOT NULL,
  seq           bigint NOT NULL,
  at            bigint NOT NULL,
  actor         text NOT NULL,
  action        text NOT NULL,
  resource_type text NOT NULL,
  resource_id   text NOT NULL,
  before        text NOT NULL,
  after         text NOT NULL,
  prev_hash     text NOT NULL,
  hash          text NOT NULL,
  PRIMARY KEY (workspace, seq)
);
CREATE TABLE {s}.members (
  workspace   text COLLATE "C" NOT NULL,
  id          bigint NOT NULL,
  host        text NOT NULL,
  pid         bigint NOT NULL,
  name        text NOT NULL,
  acked_seq   bigint NOT NULL,
  lease_until timestamptz NOT NULL,
  PRIMARY KEY (workspace, id)
);
)sql";

// The uses of a key counted per time bucket at three sizes: `bucket` is `at`
// shifted right by `bits` (20: about a second, 26: about a minute, 32: about
// 72 minutes). A window is counted from cap_uses for at most its first
// partial second and from at most 64 + 64 buckets plus one per 72 minutes
// after that, so a count costs the same for a key with a million uses in its
// window as for one with ten. Rows are kept exact by every statement that
// inserts or deletes uses; rows at 0 may linger until a purge passes them.
constexpr std::string_view step_2 = R"sql(
CREATE TABLE {s}.cap_counts (
  workspace text COLLATE "C" NOT NULL,
  key       text COLLATE "C" NOT NULL,
  bits      smallint NOT NULL,
  bucket    bigint NOT NULL,
  n         bigint NOT NULL,
  PRIMARY KEY (workspace, key, bits, bucket)
);
LOCK TABLE {s}.cap_uses IN SHARE MODE;
INSERT INTO {s}.cap_counts (workspace, key, bits, bucket, n)
  SELECT u.workspace, u.key, b.bits, u.at >> b.bits, count(*)
  FROM {s}.cap_uses u CROSS JOIN (VALUES (20::smallint), (26::smallint), (32::smallint)) AS b(bits)
  GROUP BY 1, 2, 3, 4;
)sql";

// The change seq the engine had applied when it made the hand-off's last
// suppression check; 0 for sends recorded before it was kept.
constexpr std::string_view step_3 = R"sql(
ALTER TABLE {s}.sends ADD COLUMN suppression_seq bigint NOT NULL DEFAULT 0;
)sql";

// The change seq the commit or import appending an audit record published
// (0 when none, and for records from before it was kept); and suppression
// rows as they were before a change replaced or removed them, kept so the
// audited changes can be checked against what the table holds. `id` orders
// the versions of a key as they were ended.
constexpr std::string_view step_4 = R"sql(
ALTER TABLE {s}.audit ADD COLUMN change_seq bigint NOT NULL DEFAULT 0;
CREATE TABLE {s}.suppression_superseded (
  id         bigserial PRIMARY KEY,
  workspace  text COLLATE "C" NOT NULL,
  kind       smallint NOT NULL,
  value      text COLLATE "C" NOT NULL,
  reason     smallint NOT NULL,
  source     text NOT NULL,
  created_at bigint NOT NULL,
  seq        bigint NOT NULL,
  by_seq     bigint NOT NULL
);
CREATE INDEX suppression_superseded_key ON {s}.suppression_superseded (workspace, kind, value, id);
)sql";

// The send queue. Ids come from a sequence of their own, so a purged item's
// id is never given again. The partial indexes stay as small as the items
// in their state: claims read the waiting ones in due order, recovery finds
// the claimed ones by holder, a purge the finished ones by age.
constexpr std::string_view step_5 = R"sql(
CREATE SEQUENCE {s}.queue_ids;
CREATE TABLE {s}.queue (
  workspace        text COLLATE "C" NOT NULL,
  id               bigint NOT NULL,
  idempotency_key  text COLLATE "C" NOT NULL,
  pool             text NOT NULL,
  mailbox          text NOT NULL,
  recipient_domain text NOT NULL,
  request          bytea NOT NULL,
  origin           text COLLATE "C" NOT NULL,
  enqueued_at      bigint NOT NULL,
  not_before       bigint NOT NULL,
  due_at           bigint NOT NULL,
  state            smallint NOT NULL,
  wait_reason      text COLLATE "C" NOT NULL,
  checks           bigint NOT NULL,
  claimed_by       bigint NOT NULL,
  send_id          bigint NOT NULL,
  detail           text NOT NULL,
  updated_at       bigint NOT NULL,
  PRIMARY KEY (workspace, id)
);
CREATE UNIQUE INDEX queue_idempotency ON {s}.queue (workspace, idempotency_key)
  WHERE idempotency_key <> '';
CREATE INDEX queue_due ON {s}.queue (workspace, due_at, id) WHERE state = 0;
CREATE INDEX queue_claimed ON {s}.queue (workspace, claimed_by) WHERE state = 1;
CREATE INDEX queue_finished ON {s}.queue (workspace, updated_at) WHERE state >= 2;
)sql";

// Keys recorded so that what a provider delivers more than once (an event,
// a signature token) takes effect once. An expired row is free to be
// recorded again and is purged later. Times in microseconds since the Unix
// epoch.
constexpr std::string_view step_6 = R"sql(
CREATE TABLE {s}.recorded_keys (
  workspace    text COLLATE "C" NOT NULL,
  namespace    text COLLATE "C" NOT NULL,
  key          text COLLATE "C" NOT NULL,
  recorded_at  bigint NOT NULL,
  expires_at   bigint NOT NULL,
  PRIMARY KEY (workspace, namespace, key)
);
CREATE INDEX recorded_keys_expiry ON {s}.recorded_keys (workspace, expires_at);
)sql";

// Enrollments: one contact in one sequence, with ids from a sequence of
// their own. next_due is NULL unless the scheduler has the enrollment to
// plan, so its index holds the due steps apart from the rest.
constexpr std::string_view step_7 = R"sql(
CREATE SEQUENCE {s}.enrollment_ids;
CREATE TABLE {s}.enrollments (
  workspace        text COLLATE "C" NOT NULL,
  id               bigint NOT NULL,
  sequence_id      text COLLATE "C" NOT NULL,
  address          text COLLATE "C" NOT NULL,
  display_name     text NOT NULL,
  variables        text NOT NULL,
  owner            text NOT NULL,
  actor            text NOT NULL,
  state            smallint NOT NULL,
  stop_reason      smallint NOT NULL,
  detail           text NOT NULL,
  step             bigint NOT NULL,
  next_due         bigint,
  step_due         bigint NOT NULL,
  queue_key        text COLLATE "C" NOT NULL,
  plans            bigint NOT NULL,
  prev_mailbox     text NOT NULL,
  prev_message_id  text NOT NULL,
  prev_subject     text NOT NULL,
  prev_references  text NOT NULL,
  last_sent_at     bigint NOT NULL,
  enrolled_at      bigint NOT NULL,
  updated_at       bigint NOT NULL,
  version          bigint NOT NULL,
  domain           text COLLATE "C" NOT NULL,
  PRIMARY KEY (workspace, id)
);
CREATE UNIQUE INDEX enrollments_contact ON {s}.enrollments (workspace, sequence_id, address);
CREATE INDEX enrollments_address ON {s}.enrollments (workspace, address);
CREATE INDEX enrollments_domain ON {s}.enrollments (workspace, domain);
CREATE INDEX enrollments_due ON {s}.enrollments (workspace, state, next_due);
CREATE TABLE {s}.enrollment_messages (
  workspace   text COLLATE "C" NOT NULL,
  message_id  text COLLATE "C" NOT NULL,
  enrollment  bigint NOT NULL,
  PRIMARY KEY (workspace, message_id)
);
)sql";

// Outbound webhooks: the outbox, one row per event and endpoint, ids from
// a sequence of their own. The partial indexes stay as small as the rows
// in their state, as the queue's do.
constexpr std::string_view step_8 = R"sql(
CREATE SEQUENCE {s}.webhook_outbox_ids;
CREATE TABLE {s}.webhook_outbox (
  workspace    text COLLATE "C" NOT NULL,
  id           bigint NOT NULL,
  endpoint     text COLLATE "C" NOT NULL,
  message_id   text NOT NULL,
  event_key    text COLLATE "C" NOT NULL,
  event_type   text NOT NULL,
  payload      text NOT NULL,
  created_at   bigint NOT NULL,
  due_at       bigint NOT NULL,
  state        smallint NOT NULL,
  attempts     bigint NOT NULL,
  claimed_by   bigint NOT NULL,
  last_status  integer NOT NULL,
  detail       text NOT NULL,
  updated_at   bigint NOT NULL,
  PRIMARY KEY (workspace, id)
);
CREATE UNIQUE INDEX webhook_outbox_event ON {s}.webhook_outbox (workspace, endpoint, event_key);
CREATE INDEX webhook_outbox_due ON {s}.webhook_outbox (workspace, due_at, id) WHERE state = 0;
CREATE INDEX webhook_outbox_claimed ON {s}.webhook_outbox (workspace, claimed_by) WHERE state = 1;
CREATE INDEX webhook_outbox_ended ON {s}.webhook_outbox (workspace, updated_at) WHERE state >= 2;
)sql";

// Per-day counts, one row per (scope, id, UTC day, metric), scope and
// metric as the codes of count_scope and count_metric; soft bounces, one
// row per address holding the times of its recent ones.
constexpr std::string_view step_9 = R"sql(
CREATE TABLE {s}.daily_counts (
  workspace text COLLATE "C" NOT NULL,
  scope     integer NOT NULL,
  id        text COLLATE "C" NOT NULL,
  day       integer NOT NULL,
  metric    integer NOT NULL,
  n         bigint NOT NULL,
  PRIMARY KEY (workspace, scope, id, day, metric)
);
CREATE INDEX daily_counts_day ON {s}.daily_counts (workspace, day);
CREATE TABLE {s}.soft_bounces (
  workspace text COLLATE "C" NOT NULL,
  address   text COLLATE "C" NOT NULL,
  hits      bigint[] NOT NULL,
  newest    bigint NOT NULL,
  PRIMARY KEY (workspace, address)
);
CREATE INDEX soft_bounces_newest ON {s}.soft_bounces (workspace, newest);
)sql";

// The audit chain's anchor, moved by a purge of its oldest records in the
// purge's transaction: the first kept record's seq (0 while nothing was
// purged), the hash it links to, when, and whether a purged record made the
// chain keyed.
constexpr std::string_view step_10 = R"sql(
ALTER TABLE {s}.workspaces
  ADD COLUMN audit_anchor_seq   bigint NOT NULL DEFAULT 0,
  ADD COLUMN audit_anchor_hash  text NOT NULL DEFAULT '',
  ADD COLUMN audit_anchor_at    bigint NOT NULL DEFAULT 0,
  ADD COLUMN audit_anchor_keyed boolean NOT NULL DEFAULT false;
)sql";

// Each workspace's number of suppression entries (rows with a reason; a
// row without one is a tombstone), kept by statement-level triggers in the
// transaction of every statement that writes the table, whatever the path
// (a commit, an import, an erasure), so reading it is one row however long
// the list. It sits on the workspace's row, which every write of a
// suppression already locks to publish its change seq: keeping it adds one
// update of a row the transaction holds, and no new point of contention.
// Transition tables give each statement's rows at once: one update per
// statement, not one per row.
constexpr std::string_view step_11 = R"sql(
ALTER TABLE {s}.workspaces ADD COLUMN suppression_count bigint NOT NULL DEFAULT 0;
LOCK TABLE {s}.suppressions IN SHARE MODE;
UPDATE {s}.workspaces w SET suppression_count = c.n
  FROM (SELECT workspace, count(*) AS n FROM {s}.suppressions WHERE reason IS NOT NULL
        GROUP BY workspace) c
  WHERE w.workspace = c.workspace;
CREATE FUNCTION {s}.suppressions_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {s}.workspaces AS w (workspace, suppression_count)
      SELECT workspace, count(*) FROM new_rows WHERE reason IS NOT NULL GROUP BY workspace
      ON CONFLICT (workspace) DO UPDATE
        SET suppression_count = w.suppression_count + excluded.suppression_count;
  ELSIF TG_OP = 'UPDATE' THEN
    UPDATE {s}.workspaces w SET suppression_count = w.suppression_count + d.n
      FROM (SELECT workspace, sum(n) AS n FROM
              (SELECT workspace, 1 AS n FROM new_rows WHERE reason IS NOT NULL
               UNION ALL
               SELECT workspace, -1 FROM old_rows WHERE reason IS NOT NULL) x
            GROUP BY workspace HAVING sum(n) <> 0) d
      WHERE w.workspace = d.workspace;
  ELSE
    UPDATE {s}.workspaces w SET suppression_count = w.suppression_count - d.n
      FROM (SELECT workspace, count(*) AS n FROM old_rows WHERE reason IS NOT NULL
            GROUP BY workspace) d
      WHERE w.workspace = d.workspace;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER suppressions_count_insert AFTER INSERT ON {s}.suppressions
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {s}.suppressions_count_change();
CREATE TRIGGER suppressions_count_update AFTER UPDATE ON {s}.suppressions
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {s}.suppressions_count_change();
CREATE TRIGGER suppressions_count_delete AFTER DELETE ON {s}.suppressions
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION {s}.suppressions_count_change();
)sql";

// An enrollment's re-sends of its current step after an unknown send was
// resolved not_sent: 0 for the first send (see enrollment::attempt).
constexpr std::string_view step_12 = R"sql(
ALTER TABLE {s}.enrollments ADD COLUMN attempt bigint NOT NULL DEFAULT 0;
)sql";

constexpr std::string_view steps[] = {step_1, step_2, step_3, step_4,  step_5,  step_6,
                                      step_7, step_8, step_9, step_10, step_11, step_12};
static_assert(std::size(steps) == schema_version);

std::string literal(std::string_view s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += '\'';
        out += c;
    }
    return out + "'";
}

}  // namespace

void migrate(connection& c, const std::string& schema, open_mode mode) {
    const std::string s = quote_ident(schema);
    // Session-level, so each step can commit on its own while the lock is
    // held; the key is derived from the schema so stores in different
    // schemas do not wait for each other.
    const std::string lock_args = "1835101285, hashtext(" + literal(schema) + ")";
    c.exec("SELECT pg_advisory_lock(" + lock_args + ")");
    struct unlock {
        connection& c;
        std::string args;
        ~unlock() {
            try {
                if (!c.broken()) c.exec("SELECT pg_advisory_unlock(" + args + ")");
            } catch (...) {
            }
        }
    } guard{c, lock_args};

    // CREATE SCHEMA IF NOT EXISTS still needs the CREATE privilege on the
    // database, which a host that created the schema for us may not grant.
    auto exists = c.run({"mailers_schema_exists", "SELECT 1 FROM pg_namespace WHERE nspname = $1"},
                        params{}.add(schema));
    auto tables = c.run({"mailers_version_table_exists",
                         "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = "
                         "'schema_version'"},
                        params{}.add(schema));
    std::int64_t found = 0;
    if (tables.rows() > 0)
        found = c.query("SELECT coalesce(max(version), 0) FROM " + s + ".schema_version")
                    .i64(0, 0);
    if (found == 0 && mode == open_mode::existing)
        throw exception(make_error_code(errc::store_missing),
                        fmt::format("postgres store: schema {} holds no mailers tables; "
                                    "open_mode::create makes them",
                                    s));
    if (found > 0 && mode == open_mode::create)
        throw exception(make_error_code(errc::store_exists),
                        fmt::format("postgres store: schema {} already holds mailers tables "
                                    "(version {})",
                                    s, found));
    if (exists.rows() == 0) c.exec("CREATE SCHEMA " + s);
    c.exec("CREATE TABLE IF NOT EXISTS " + s +
           ".schema_version (version integer PRIMARY KEY, "
           "applied_at timestamptz NOT NULL DEFAULT now())");
    auto v = c.query("SELECT coalesce(max(version), 0) FROM " + s + ".schema_version");
    const auto current = v.i64(0, 0);
    if (current > schema_version) {
        throw exception(make_error_code(errc::schema_too_new),
                        fmt::format("postgres store: schema {} holds version {} of the mailers "
                                    "tables; this library writes version {}",
                                    s, current, schema_version));
    }
    for (auto version = current + 1; version <= schema_version; ++version) {
        std::string sql = fmt::format(fmt::runtime(steps[version - 1]), fmt::arg("s", s));
        c.exec("BEGIN;\n" + sql + "\nINSERT INTO " + s + ".schema_version (version) VALUES (" +
               std::to_string(version) + ");\nCOMMIT;");
    }
}

}  // namespace mailers::pg
