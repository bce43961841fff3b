-- A platform whose schema differs from config/sql/schema.sql, for the
-- worked example in docs/postgres.md ("Your schema differs"); the test
-- test/integration/pg_truth_test.c loads it with postgres.yaml beside it.
--   * tickets has `status` (not `state`) and `status_changed_at`;
--   * there is no ticket_events table (no event log);
--   * circuit breakers live in ops.agent_health, one row per agent and
--     project, with `breaker` and `breaker_since`.
-- vms and vm_pool are as in the reference schema.
CREATE SCHEMA IF NOT EXISTS ops;

CREATE TABLE IF NOT EXISTS tickets (
    id                bigserial   PRIMARY KEY,
    title             text        NOT NULL,
    status            text        NOT NULL DEFAULT 'open',
    status_changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ops.agent_health (
    agent         text        NOT NULL,
    project       text        NOT NULL,
    breaker       text        NOT NULL DEFAULT 'closed',
    breaker_since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, project)
);

CREATE TABLE IF NOT EXISTS vms (
    id    text PRIMARY KEY,
    state text NOT NULL DEFAULT 'provisioning'
);

CREATE TABLE IF NOT EXISTS vm_pool (
    id       integer PRIMARY KEY DEFAULT 1,
    max_size integer NOT NULL
);

-- A few rows: 2 open, 1 in_progress for 2 hours (stuck), 3 done; one
-- breaker open for 30 minutes, one closed; 2 of 4 VMs busy.
INSERT INTO tickets (title, status, status_changed_at) VALUES
    ('a', 'open', now()), ('b', 'open', now()),
    ('c', 'in_progress', now() - interval '2 hours'),
    ('d', 'done', now()), ('e', 'done', now()), ('f', 'done', now());
INSERT INTO ops.agent_health (agent, project, breaker, breaker_since) VALUES
    ('coder-1', 'billing', 'open', now() - interval '30 minutes'),
    ('coder-2', 'platform', 'closed', now() - interval '2 days');
INSERT INTO vms (id, state) VALUES ('vm-1', 'busy'), ('vm-2', 'busy');
INSERT INTO vm_pool (id, max_size) VALUES (1, 4);
