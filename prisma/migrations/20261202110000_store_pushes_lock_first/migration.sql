-- postbox_store_pushes, the same contract as before (see 20261130224500_store_pushes_chain_loop),
-- but taking the audit log's head lock before it checks that each postbox takes pushes
-- rather than after: on PostgreSQL a postbox closed (or expired) between the check and
-- the lock still took the batch (found in review).
CREATE OR REPLACE FUNCTION postbox_store_pushes(
  a_id text[], a_postbox_id text[], a_contract_id text[], a_size int[], a_sha256 text[], a_idempotency_key text[], a_request_hash text[],
  a_received_at timestamp(3)[], a_expires_at timestamp(3)[], a_ciphertext text[], a_descriptor text[],
  a_event_id text[], a_event_at timestamp(3)[], a_actor_type text[], a_actor_id text[], a_action text[], a_outcome text[], a_reason text[],
  a_application_id text[], a_event_contract_id text[], a_event_postbox_id text[], a_target_id text[], a_detail text[], a_canonical text[]
) RETURNS SETOF "Push" LANGUAGE plpgsql AS $fn$
DECLARE
  -- Positions in the batch (1-based) of the pushes whose postbox takes them, in batch order.
  accepted bigint[];
  -- chain[k] is the log's hash before the k-th accepted push's event, chain[k + 1] after it.
  chain text[];
  h text;
BEGIN
  -- The log's head first, locked until the transaction ends. Every postbox status change
  -- appends an audit event, so it holds this lock until it commits: the check below (a
  -- new snapshot, at READ COMMITTED) sees any change committed before the lock was got.
  -- Checked before taking the lock, a postbox closed meanwhile still took the pushes.
  SELECT "hash" INTO STRICT h FROM "AuditHead" WHERE "id" = 1 FOR UPDATE;

  SELECT array_agg(t.ord ORDER BY t.ord) INTO accepted
  FROM unnest(a_postbox_id, a_contract_id, a_received_at) WITH ORDINALITY AS t(postbox_id, contract_id, received_at, ord)
  JOIN "Postbox" b ON b."id" = t.postbox_id AND b."contractId" = t.contract_id AND b."status" = 'READY' AND b."expiresAt" > t.received_at;
  IF accepted IS NULL THEN
    RETURN;
  END IF;

  -- The events chain onto the head: sha256(previous hash || '\n' || canonical text), as chainHash() computes it.
  chain := ARRAY[h];
  FOR k IN 1 .. array_length(accepted, 1) LOOP
    h := encode(sha256(convert_to(h || E'\n' || a_canonical[accepted[k]], 'UTF8')), 'hex');
    chain := chain || h;
  END LOOP;
  UPDATE "AuditHead" SET "hash" = h WHERE "id" = 1;

  RETURN QUERY
  WITH input AS (
    SELECT * FROM unnest(a_id, a_postbox_id, a_contract_id, a_size, a_sha256, a_idempotency_key, a_request_hash, a_received_at, a_expires_at,
                         a_ciphertext, a_descriptor, a_event_id, a_event_at, a_actor_type, a_actor_id, a_action, a_outcome, a_reason,
                         a_application_id, a_event_contract_id, a_event_postbox_id, a_target_id, a_detail)
      WITH ORDINALITY AS t(id, postbox_id, contract_id, size, sha256, idempotency_key, request_hash, received_at, expires_at, ciphertext, descriptor,
                           event_id, event_at, actor_type, actor_id, action, outcome, reason, application_id, event_contract_id, event_postbox_id,
                           target_id, detail, ord)
  ),
  chosen AS (
    SELECT i.*, c.k FROM unnest(accepted) WITH ORDINALITY AS c(ord, k) JOIN input i ON i.ord = c.ord
  ),
  pushed AS (
    INSERT INTO "Push" ("id", "postboxId", "contractId", "status", "size", "sha256", "idempotencyKey", "requestHash", "receivedAt", "expiresAt")
    SELECT a.id, a.postbox_id, a.contract_id, 'PENDING', a.size, a.sha256, a.idempotency_key, a.request_hash, a.received_at, a.expires_at FROM chosen a
    RETURNING *
  ),
  stored AS (
    -- Its foreign key to Push is checked at the end of the statement, when the pushes are in.
    INSERT INTO "PushContent" ("pushId", "ciphertext", "descriptor")
    SELECT a.id, a.ciphertext, a.descriptor FROM chosen a
  ),
  audited AS (
    INSERT INTO "AuditEvent" ("id", "at", "actorType", "actorId", "action", "outcome", "reason", "applicationId", "contractId", "postboxId", "targetId", "detail", "prevHash", "hash")
    SELECT e.event_id, e.event_at, e.actor_type, e.actor_id, e.action, e.outcome, e.reason, e.application_id, e.event_contract_id, e.event_postbox_id,
           e.target_id, e.detail::jsonb, chain[e.k], chain[e.k + 1]
    FROM chosen e
    ORDER BY e.k
  )
  SELECT * FROM pushed;
END
$fn$;
