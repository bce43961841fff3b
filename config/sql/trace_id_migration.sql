-- swarmgate: store the platform's trace id (the X-Trace-Id UUID) on tickets.
-- Safe to run more than once. gen_random_uuid() is built in since
-- PostgreSQL 13 (pgcrypto before that). See docs/tracing.md.
ALTER TABLE tickets ADD COLUMN IF NOT EXISTS trace_id UUID DEFAULT gen_random_uuid();
CREATE INDEX IF NOT EXISTS idx_tickets_trace_id ON tickets(trace_id);
