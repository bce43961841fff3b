-- swarmgate: store the platform's trace id (the X-Trace-Id UUID) on tickets.
-- Safe to run more than once. gen_random_uuid() is built in since
-- PostgreSQL 13 (pgcrypto before that). See docs/tracing.md.
ALTER TABLE tickets ADD COLUMN IF NOT EXISTS trace_id UUID DEFAULT gen_random_uuid();
CREATE INDEX IF NOT EXISTS idx_tickets_trace_id ON tickets(trace_id);
-- Event sourcing: each ticket_events row carries the trace id of the request
-- that made the change (see schema.sql's swarm_tickets_event trigger).
-- Skipped when there is no ticket_events table.
DO $$
BEGIN
    IF to_regclass('ticket_events') IS NOT NULL THEN
        ALTER TABLE ticket_events ADD COLUMN IF NOT EXISTS trace_id UUID;
        CREATE INDEX IF NOT EXISTS idx_ticket_events_trace_id ON ticket_events(trace_id);
    END IF;
END
$$;
