-- The outbox publishes in short transactions (issue 13): a row is claimed with a lease, published
-- with no connection held, then marked. A row that fails is retried after a backoff of its own,
-- and one that keeps failing permanently is set aside so that it never blocks the others.

ALTER TABLE tern_outbox
    ADD COLUMN leased_until    timestamptz,
    -- Who holds the lease: a failure is recorded only by the holder.
    ADD COLUMN lease_token     text,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN strikes         integer     NOT NULL DEFAULT 0,
    ADD COLUMN set_aside_at    timestamptz;

-- The relay scans only rows that may still be published, in id order.
DROP INDEX tern_outbox_pending;
CREATE INDEX tern_outbox_pending ON tern_outbox (id)
    WHERE published_at IS NULL AND set_aside_at IS NULL;
-- The relay counts set-aside rows on every call.
CREATE INDEX tern_outbox_set_aside ON tern_outbox (id)
    WHERE published_at IS NULL AND set_aside_at IS NOT NULL;
