-- The trace context of the request that staged each event (issue 15): published as the event's
-- `traceparent` (the CloudEvents distributed-tracing extension, `ce-traceparent` on Pub/Sub), so
-- the consumer continues the producer's trace. NULL for rows staged outside a request.

ALTER TABLE tern_outbox ADD COLUMN traceparent text;
