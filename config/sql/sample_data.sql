-- Sample rows for the reference schema (config/sql/schema.sql): a small
-- swarm with history. Idempotent: loading it twice changes nothing (it only
-- inserts when no 'sample:' ticket exists yet).
--
-- What it holds (the unit tests count on these numbers):
--   tickets by state: open 3, queued 2, in_progress 4 (2 of them > 1 h in
--   that state), review 1, blocked 1, done 5, failed 2, cancelled 1 = 19
--   circuit breakers: 3 closed, 1 open (since 25 min), 1 half_open
--   vms: 5 active (provisioning 1, idle 1, busy 3), 1 stopped; pool max 8
--   ticket_events: one per state change, written by the trigger, with
--   history in the past (created_at = the change's time)

DO $$
DECLARE
    t bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM tickets WHERE title LIKE 'sample:%') THEN
        RETURN;
    END IF;

    -- open
    INSERT INTO tickets (title, state, project, created_at, updated_at, state_changed_at) VALUES
        ('sample: add retry to webhook sender', 'open', 'platform', now() - interval '10 minutes', now() - interval '10 minutes', now() - interval '10 minutes'),
        ('sample: flaky test in billing', 'open', 'billing', now() - interval '2 hours', now() - interval '2 hours', now() - interval '2 hours'),
        ('sample: docs for "quotas"', 'open', 'platform', now() - interval '3 days', now() - interval '3 days', now() - interval '3 days');

    -- queued
    INSERT INTO tickets (title, state, project, created_at, updated_at, state_changed_at) VALUES
        ('sample: upgrade libuv', 'open', 'platform', now() - interval '50 minutes', now() - interval '50 minutes', now() - interval '50 minutes')
        RETURNING id INTO t;
    UPDATE tickets SET state = 'queued', state_changed_at = now() - interval '40 minutes' WHERE id = t;
    INSERT INTO tickets (title, state, project, created_at, updated_at, state_changed_at) VALUES
        ('sample: rotate API keys', 'open', 'security', now() - interval '30 minutes', now() - interval '30 minutes', now() - interval '30 minutes')
        RETURNING id INTO t;
    UPDATE tickets SET state = 'queued', state_changed_at = now() - interval '29 minutes' WHERE id = t;

    -- in_progress: two stuck (> 1 h), two recent
    INSERT INTO tickets (title, state, project, agent, created_at, updated_at, state_changed_at) VALUES
        ('sample: migrate invoices table', 'open', 'billing', 'coder-1', now() - interval '5 hours', now() - interval '5 hours', now() - interval '5 hours')
        RETURNING id INTO t;
    UPDATE tickets SET state = 'queued', state_changed_at = now() - interval '4 hours 50 minutes' WHERE id = t;
    UPDATE tickets SET state = 'in_progress', state_changed_at = now() - interval '3 hours' WHERE id = t;
    INSERT INTO tickets (title, state, project, agent, created_at, updated_at, state_changed_at) VALUES
        ('sample: fix OOM in exporter', 'open', 'platform', 'coder-2', now() - interval '2 hours', now() - interval '2 hours', now() - interval '2 hours')
        RETURNING id INTO t;
    UPDATE tickets SET state = 'in_progress', state_changed_at = now() - interval '90 minutes' WHERE id = t;
    INSERT INTO tickets (title, state, project, agent, created_at, updated_at, state_changed_at) VALUES
        ('sample: add pagination to /tickets', 'open', 'platform', 'coder-1', now() - interval '30 minutes', now() - interval '30 minutes', now() - interval '30 minutes')
        RETURNING id INTO t;
    UPDATE tickets SET state = 'in_progress', state_changed_at = now() - interval '20 minutes' WHERE id = t;
    INSERT INTO tickets (title, state, project, agent, created_at, updated_at, state_changed_at) VALUES
        ('sample: tune connection pool', 'open', 'billing', 'coder-3', now() - interval '15 minutes', now() - interval '15 minutes', now() - interval '15 minutes')
        RETURNING id INTO t;
    UPDATE tickets SET state = 'in_progress', state_changed_at = now() - interval '5 minutes' WHERE id = t;

    -- review
    INSERT INTO tickets (title, state, project, agent, created_at, updated_at, state_changed_at) VALUES
        ('sample: refactor auth middleware', 'open', 'security', 'coder-2', now() - interval '6 hours', now() - interval '6 hours', now() - interval '6 hours')
        RETURNING id INTO t;
    UPDATE tickets SET state = 'in_progress', state_changed_at = now() - interval '5 hours' WHERE id = t;
    UPDATE tickets SET state = 'review', state_changed_at = now() - interval '45 minutes' WHERE id = t;

    -- blocked
    INSERT INTO tickets (title, state, project, agent, created_at, updated_at, state_changed_at) VALUES
        ('sample: vendor SDK needs credentials', 'open', 'platform', 'coder-3', now() - interval '1 day', now() - interval '1 day', now() - interval '1 day')
        RETURNING id INTO t;
    UPDATE tickets SET state = 'in_progress', state_changed_at = now() - interval '20 hours' WHERE id = t;
    UPDATE tickets SET state = 'blocked', state_changed_at = now() - interval '19 hours' WHERE id = t;

    -- done x5, failed x2, cancelled x1: full histories
    FOR i IN 1..5 LOOP
        INSERT INTO tickets (title, state, project, agent, created_at, updated_at, state_changed_at) VALUES
            ('sample: finished task #' || i, 'open', CASE WHEN i % 2 = 0 THEN 'billing' ELSE 'platform' END,
             'coder-' || (1 + i % 3), now() - make_interval(hours => 24 + i), now() - make_interval(hours => 24 + i),
             now() - make_interval(hours => 24 + i))
            RETURNING id INTO t;
        UPDATE tickets SET state = 'queued', state_changed_at = now() - make_interval(hours => 23 + i) WHERE id = t;
        UPDATE tickets SET state = 'in_progress', state_changed_at = now() - make_interval(hours => 22 + i) WHERE id = t;
        UPDATE tickets SET state = 'review', state_changed_at = now() - make_interval(hours => 20 + i) WHERE id = t;
        UPDATE tickets SET state = 'done', state_changed_at = now() - make_interval(hours => 19 + i) WHERE id = t;
    END LOOP;
    FOR i IN 1..2 LOOP
        INSERT INTO tickets (title, state, project, agent, created_at, updated_at, state_changed_at) VALUES
            ('sample: failed task #' || i, 'open', 'platform', 'coder-' || i, now() - make_interval(hours => 12 + i),
             now() - make_interval(hours => 12 + i), now() - make_interval(hours => 12 + i))
            RETURNING id INTO t;
        UPDATE tickets SET state = 'in_progress', state_changed_at = now() - make_interval(hours => 11 + i) WHERE id = t;
        UPDATE tickets SET state = 'failed', state_changed_at = now() - make_interval(hours => 10 + i) WHERE id = t;
    END LOOP;
    INSERT INTO tickets (title, state, project, created_at, updated_at, state_changed_at) VALUES
        ('sample: duplicate of #3', 'open', 'platform', now() - interval '8 hours', now() - interval '8 hours', now() - interval '8 hours')
        RETURNING id INTO t;
    UPDATE tickets SET state = 'cancelled', state_changed_at = now() - interval '7 hours' WHERE id = t;
END
$$;

INSERT INTO circuit_breakers (agent, project, state, failures, changed_at) VALUES
    ('coder-1', 'platform', 'closed', 0, now() - interval '2 days'),
    ('coder-1', 'billing', 'closed', 1, now() - interval '3 hours'),
    ('coder-2', 'platform', 'open', 7, now() - interval '25 minutes'),
    ('coder-2', 'security', 'half_open', 3, now() - interval '2 minutes'),
    ('coder-3', 'billing', 'closed', 0, now() - interval '1 day')
ON CONFLICT (agent, project) DO NOTHING;

INSERT INTO vms (id, state, agent, started_at) VALUES
    ('vm-01', 'busy', 'coder-1', now() - interval '3 hours'),
    ('vm-02', 'busy', 'coder-2', now() - interval '90 minutes'),
    ('vm-03', 'busy', 'coder-3', now() - interval '5 minutes'),
    ('vm-04', 'idle', NULL, now() - interval '1 hour'),
    ('vm-05', 'provisioning', NULL, now() - interval '30 seconds'),
    ('vm-06', 'stopped', NULL, now() - interval '1 day')
ON CONFLICT (id) DO NOTHING;

INSERT INTO vm_pool (id, max_size) VALUES (1, 8) ON CONFLICT (id) DO NOTHING;
