-- Retention (issue 13): the relay prunes published outbox rows, inbox rows and idempotency keys
-- older than their windows, in small batches; each scan starts from these indexes.

CREATE INDEX tern_outbox_published ON tern_outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX tern_inbox_processed ON tern_inbox (processed_at);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
