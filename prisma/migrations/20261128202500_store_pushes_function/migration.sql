-- Stores a batch of pushes, their content and their push.create audit events in one
-- call (PushRepository.insertWithAudit; one array per column, in batch order). Each
-- push is stored only if its postbox is READY, unexpired and of its contract; the
-- events of the pushes stored are chained onto the locked AuditHead row exactly as
-- chainHash() does: sha256(previous hash || '\n' || canonical text).
--
-- A PL/pgSQL function rather than the same statement sent each time: PL/pgSQL keeps
-- the statement's plan for the connection's lifetime, where a statement sent by the
-- client is parsed and planned again for every batch (on the embedded database that
-- was 40% of a batch's time). Changing it takes a new migration (CREATE OR REPLACE).
CREATE FUNCTION postbox_store_pushes(
  a_id text[], a_postbox_id text[], a_contract_id text[], a_size int[], a_sha256 text[], a_idempotency_key text[], a_request_hash text[],
  a_received_at timestamp(3)[], a_expires_at timestamp(3)[], a_ciphertext text[], a_descriptor text[],
  a_event_id text[], a_event_at timestamp(3)[], a_actor_type text[], a_actor_id text[], a_action text[], a_outcome text[], a_reason text[],
  a_application_id text[], a_event_contract_id text[], a_event_postbox_id text[], a_target_id text[], a_detail text[], a_canonical text[]
) RETURNS SETOF "Push" LANGUAGE plpgsql AS $fn$
BEGIN
  RETURN QUERY
  WITH RECURSIVE input AS (
    SELECT * FROM unnest(a_id, a_postbox_id, a_contract_id, a_size, a_sha256, a_idempotency_key, a_request_hash, a_received_at, a_expires_at,
                         a_ciphertext, a_descriptor, a_event_id, a_event_at, a_actor_type, a_actor_id, a_action, a_outcome, a_reason,
                         a_application_id, a_event_contract_id, a_event_postbox_id, a_target_id, a_detail, a_canonical)
      WITH ORDINALITY AS t(id, postbox_id, contract_id, size, sha256, idempotency_key, request_hash, received_at, expires_at, ciphertext, descriptor,
                           event_id, event_at, actor_type, actor_id, action, outcome, reason, application_id, event_contract_id, event_postbox_id,
                           target_id, detail, canonical, ord)
  ),
  accepted AS (
    SELECT i.* FROM input i JOIN "Postbox" b
      ON b."id" = i.postbox_id AND b."contractId" = i.contract_id AND b."status" = 'READY' AND b."expiresAt" > i.received_at
  ),
  pushed AS (
    INSERT INTO "Push" ("id", "postboxId", "contractId", "status", "size", "sha256", "idempotencyKey", "requestHash", "receivedAt", "expiresAt")
    SELECT a.id, a.postbox_id, a.contract_id, 'PENDING', a.size, a.sha256, a.idempotency_key, a.request_hash, a.received_at, a.expires_at FROM accepted a
    RETURNING *
  ),
  stored AS (
    INSERT INTO "PushContent" ("pushId", "ciphertext", "descriptor")
    SELECT a.id, a.ciphertext, a.descriptor FROM accepted a JOIN pushed p ON p."id" = a.id
  ),
  events AS (
    SELECT row_number() OVER (ORDER BY a.ord) AS n, a.* FROM accepted a JOIN pushed p ON p."id" = a.id
  ),
  head AS (SELECT h."hash" FROM "AuditHead" h WHERE h."id" = 1 FOR UPDATE),
  chain (n, hash) AS (
    SELECT 0::bigint, (SELECT head."hash" FROM head)
    UNION ALL
    SELECT e.n, encode(sha256(convert_to(c.hash || E'\n' || e.canonical, 'UTF8')), 'hex') FROM chain c JOIN events e ON e.n = c.n + 1
  ),
  audited AS (
    INSERT INTO "AuditEvent" ("id", "at", "actorType", "actorId", "action", "outcome", "reason", "applicationId", "contractId", "postboxId", "targetId", "detail", "prevHash", "hash")
    SELECT e.event_id, e.event_at, e.actor_type, e.actor_id, e.action, e.outcome, e.reason, e.application_id, e.event_contract_id, e.event_postbox_id,
           e.target_id, e.detail::jsonb, prev.hash, c.hash
    FROM events e JOIN chain c ON c.n = e.n JOIN chain prev ON prev.n = e.n - 1
    ORDER BY e.n
  ),
  moved AS (
    UPDATE "AuditHead" h SET "hash" = (SELECT c.hash FROM chain c ORDER BY c.n DESC LIMIT 1) WHERE h."id" = 1 AND EXISTS (SELECT 1 FROM events)
  )
  SELECT * FROM pushed;
END
$fn$;
