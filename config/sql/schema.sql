-- swarmgate reference schema: the tables the default Postgres queries read.
--
-- Idempotent: every statement can run again on a database that already has
-- the schema (IF NOT EXISTS, CREATE OR REPLACE). Needs PostgreSQL 14+
-- (gen_random_uuid() is built in since 13, CREATE OR REPLACE TRIGGER since 14).
-- swarmgate itself only reads; see docs/postgres.md for the read-only role.

-- Tickets: one row per unit of agent work.
CREATE TABLE IF NOT EXISTS tickets (
    id               bigserial PRIMARY KEY,
    title            text        NOT NULL,
    state            text        NOT NULL DEFAULT 'open',
    project          text        NOT NULL DEFAULT 'default',
    agent            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    state_changed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tickets_state_check CHECK (state IN
        ('open', 'queued', 'in_progress', 'review', 'blocked', 'done', 'failed', 'cancelled'))
);

-- Trace ids (DESIGN.md section 4): the platform stamps the X-Trace-Id of the
-- request that created the ticket; older rows get a fresh one.
ALTER TABLE tickets ADD COLUMN IF NOT EXISTS trace_id UUID DEFAULT gen_random_uuid();
CREATE INDEX IF NOT EXISTS idx_tickets_trace_id ON tickets(trace_id);

-- swarm_tickets_total / swarm_tickets_stuck group and filter by state.
CREATE INDEX IF NOT EXISTS idx_tickets_state ON tickets(state, state_changed_at);

-- Event sourcing: one row per state change, in order of id.
CREATE TABLE IF NOT EXISTS ticket_events (
    id         bigserial   PRIMARY KEY,
    ticket_id  bigint      NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    from_state text,                -- NULL for the event that created the ticket
    to_state   text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The transition query looks up a ticket's previous event.
CREATE INDEX IF NOT EXISTS idx_ticket_events_ticket ON ticket_events(ticket_id, id);
-- swarm_tickets_processed_total counts the transitions into a final state
-- (an index-only count; the log is append-only, see docs/postgres.md).
CREATE INDEX IF NOT EXISTS idx_ticket_events_final ON ticket_events(to_state)
    WHERE to_state IN ('done', 'failed', 'cancelled');

-- Keeps state_changed_at/updated_at current and writes ticket_events, so the
-- platform only has to UPDATE tickets SET state = ... . An explicit
-- state_changed_at in the same statement wins (used to load history).
CREATE OR REPLACE FUNCTION swarm_tickets_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.state IS DISTINCT FROM OLD.state
           AND NEW.state_changed_at IS NOT DISTINCT FROM OLD.state_changed_at THEN
            NEW.state_changed_at := now();
        END IF;
        IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
            NEW.updated_at := GREATEST(now(), NEW.state_changed_at);
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION swarm_tickets_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ticket_events (ticket_id, from_state, to_state, created_at)
        VALUES (NEW.id, NULL, NEW.state, NEW.state_changed_at);
    ELSIF NEW.state IS DISTINCT FROM OLD.state THEN
        INSERT INTO ticket_events (ticket_id, from_state, to_state, created_at)
        VALUES (NEW.id, OLD.state, NEW.state, NEW.state_changed_at);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER tickets_touch BEFORE UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION swarm_tickets_touch();
CREATE OR REPLACE TRIGGER tickets_event AFTER INSERT OR UPDATE OF state ON tickets
    FOR EACH ROW EXECUTE FUNCTION swarm_tickets_event();

-- Circuit breakers: one per (agent, project).
CREATE TABLE IF NOT EXISTS circuit_breakers (
    agent      text        NOT NULL,
    project    text        NOT NULL,
    state      text        NOT NULL DEFAULT 'closed',
    failures   integer     NOT NULL DEFAULT 0,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, project),
    CONSTRAINT circuit_breakers_state_check CHECK (state IN ('closed', 'open', 'half_open'))
);

-- Agent VMs. provisioning/idle/busy/draining count against the pool.
CREATE TABLE IF NOT EXISTS vms (
    id         text        PRIMARY KEY,
    state      text        NOT NULL DEFAULT 'provisioning',
    agent      text,
    ticket_id  bigint      REFERENCES tickets(id) ON DELETE SET NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vms_state_check CHECK (state IN
        ('provisioning', 'idle', 'busy', 'draining', 'stopped', 'failed'))
);
CREATE INDEX IF NOT EXISTS idx_vms_state ON vms(state);

-- The VM pool's size: a single row.
CREATE TABLE IF NOT EXISTS vm_pool (
    id       integer PRIMARY KEY DEFAULT 1,
    max_size integer NOT NULL,
    CONSTRAINT vm_pool_single_row CHECK (id = 1),
    CONSTRAINT vm_pool_max_size_check CHECK (max_size >= 0)
);
