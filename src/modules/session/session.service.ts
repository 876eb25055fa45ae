// Signed session establishment, modelled on digi.me's signed requests: the app
// signs a JWT (typ JWT) with its contract's private key carrying client_id
// "<appId>_<contractId>", a single-use nonce and a millisecond timestamp. The
// algorithm is pinned to the registered key; nonces are single-use per contract.
import { createPublicKey } from "node:crypto";
import { decodeProtectedHeader, jwtVerify, errors as joseErrors, type JWK, type ProtectedHeaderParameters } from "jose";
import type { Config } from "../../infra/config.js";
import { clipText } from "../../infra/text.js";
import { newSecret, sha256Hex } from "../../infra/crypto.js";
import { isUniqueViolation } from "../../infra/db/prisma-errors.js";
import { AppError, ErrorCode, badInput, forbidden, unauthenticated } from "../../infra/errors.js";
import { SESSION_KEY_PREFIX, type SessionPrincipal } from "../../infra/graphql/context.js";
import { newId } from "../../infra/ids.js";
import type { ApplicationRepository, ContractWithKeys } from "../application/application.repository.js";
import type { AuditService } from "../audit/audit.service.js";
import type { SessionRepository, SessionWithContract } from "./session.repository.js";
import { VerifiedSessions } from "./session.cache.js";
import type { SessionEnds } from "./session.events.js";

export interface CreateSessionInput {
  appId: string;
  contractId: string;
  assertion: string;
}

export interface IssuedSession {
  key: string;
  expiresAt: Date;
  appId: string;
  contractId: string;
}

const NONCE_RE = /^[\x21-\x7e]{16,128}$/;

/**
 * A refusal with the audit reason that goes with it. `attributed`: the request named a
 * contract of the application it names, so the event is filed under them; before that
 * is known (or when it is not so) the ids are only what the caller claimed, and filing
 * the event under them would let anyone write into another tenant's audit log.
 */
class Refusal extends Error {
  constructor(
    readonly error: AppError,
    readonly reason: string,
    readonly attributed = true,
  ) {
    super(error.message);
  }
}

/** Why a session found by its key no longer authenticates; undefined when it does. */
function whyNotValid(s: SessionWithContract): AppError | undefined {
  // Disabled first: disabling also ends the sessions, and this says why.
  if (s.contract.application.disabledAt || s.contract.disabledAt) return new AppError(ErrorCode.FORBIDDEN, "The application or contract of this session is disabled.");
  if (s.revokedAt) return unauthenticated("This session was ended (endSession, or the operator disabled the application or rotated the contract's key). Establish a new one with createSession.");
  if (s.expiresAt.getTime() <= Date.now()) return unauthenticated("This session has expired. Establish a new one with createSession.");
  return undefined;
}

export class SessionService {
  private readonly verified: VerifiedSessions;

  constructor(
    private readonly repo: SessionRepository,
    private readonly apps: ApplicationRepository,
    private readonly audit: AuditService,
    private readonly config: Config,
    private readonly ends: SessionEnds,
  ) {
    this.verified = new VerifiedSessions(config.SESSION_RECHECK);
    ends.onEnded((p) => this.verified.forget(p));
  }

  async createSession(input: CreateSessionInput): Promise<IssuedSession> {
    const { appId, contractId, assertion } = input;
    try {
      return await this.establish(input);
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      const claimed = { appId: clipText(appId, 64), contractId: clipText(contractId, 64) };
      await this.audit.record({
        actorType: "APP",
        actorId: claimed.appId,
        action: "session.create",
        outcome: "REFUSED",
        reason: `${e.error.code}:${e.reason}`,
        ...(e.attributed
          ? { applicationId: claimed.appId, contractId: claimed.contractId, detail: { assertionLength: assertion.length } }
          : { detail: { assertionLength: assertion.length, requestedAppId: claimed.appId, requestedContractId: claimed.contractId } }),
      });
      throw e.error;
    }
  }

  private async establish({ appId, contractId, assertion }: CreateSessionInput): Promise<IssuedSession> {
    // Until the contract is found to be the application's, refusals are not filed under them.
    let attributed = false;
    const refuse = (error: AppError, reason: string) => new Refusal(error, reason, attributed);
    if (assertion.length > 16_384) throw refuse(badInput("assertion is too long (16 KiB at most).", "assertion"), "assertion_too_long");

    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(assertion);
      if (assertion.split(".").length !== 3) throw new Error("not compact");
    } catch {
      throw refuse(badInput("assertion must be a compact JWS (header.payload.signature) signed with the contract's private key.", "assertion"), "malformed_jws");
    }

    const contract = await this.apps.findContract(contractId);
    if (!contract || contract.applicationId !== appId) {
      throw refuse(unauthenticated(`No contract ${contractId} is registered for application ${appId}. Check both IDs.`), "unknown_contract");
    }
    attributed = true;
    if (contract.application.disabledAt) throw refuse(forbidden(`Application ${appId} is disabled. Ask the operator to enable it.`), "application_disabled");
    if (contract.disabledAt) throw refuse(forbidden(`Contract ${contractId} is disabled.`), "contract_disabled");

    const accepted = [...new Set(contract.keys.map((k) => k.alg))];
    if (typeof header.alg !== "string" || !accepted.includes(header.alg)) {
      throw refuse(
        unauthenticated(`Algorithm ${String(header.alg)} is not accepted for this contract; sign the assertion with ${accepted.join(" or ") || "its registered key"}.`),
        "algorithm_not_allowed",
      );
    }
    if (header.typ !== "JWT") throw refuse(unauthenticated('The assertion header must have typ "JWT".'), "bad_typ");

    const { payload, keyId } = await this.verifySignature(assertion, header, contract);

    const clientId = `${appId}_${contractId}`;
    if (payload.client_id !== clientId) {
      throw refuse(unauthenticated(`The assertion's client_id must be "${clientId}".`), "bad_client_id");
    }
    if (typeof payload.nonce !== "string" || !NONCE_RE.test(payload.nonce)) {
      throw refuse(badInput("The assertion needs a nonce: a random string of 16–128 printable characters, new for every request.", "assertion"), "bad_nonce");
    }
    if (typeof payload.timestamp !== "number" || !Number.isInteger(payload.timestamp)) {
      throw refuse(badInput("The assertion needs timestamp: the current time in Unix milliseconds (an integer).", "assertion"), "bad_timestamp");
    }
    const skew = this.config.ASSERTION_MAX_SKEW;
    const now = Date.now();
    if (Math.abs(now - payload.timestamp) > skew) {
      throw refuse(
        unauthenticated(`The assertion's timestamp is more than ${Math.round(skew / 1000)} s from the server's clock (${new Date(now).toISOString()}). Sign a fresh assertion and check the clock.`),
        payload.timestamp < now ? "stale_timestamp" : "future_timestamp",
      );
    }

    const key = newSecret(SESSION_KEY_PREFIX);
    const expiresAt = new Date(now + this.config.SESSION_TTL);
    const sessionId = newId("ses");
    try {
      await this.repo.transaction(async (tx) => {
        // The key, contract and application were read before this transaction. A rotation or
        // a disable that commits meanwhile must not leave a session signed with an old key:
        // the lock makes it either commit first (and this session is refused) or wait for
        // this one (and end it with the contract's other sessions).
        if (!(await this.repo.lockSigningKey(tx, keyId))) {
          throw refuse(unauthenticated("The contract's key was rotated (or the contract or application disabled) while this session was being created. Sign a new assertion with the current key."), "key_revoked");
        }
        // The nonce is remembered until its timestamp can no longer pass the window.
        await this.repo.insertNonce(tx, contractId, payload.nonce as string, new Date(payload.timestamp as number + skew + 60_000));
        await this.repo.create(tx, { id: sessionId, keyHash: sha256Hex(key), contractId, expiresAt });
        await this.audit.record(
          { actorType: "APP", actorId: appId, action: "session.create", outcome: "SUCCESS", applicationId: appId, contractId, targetId: sessionId, detail: { alg: header.alg as string } },
          tx,
        );
      });
    } catch (e) {
      if (isUniqueViolation(e)) throw refuse(unauthenticated("This nonce was already used. Every assertion needs a new random nonce."), "replayed_nonce");
      throw e;
    }
    return { key, expiresAt, appId, contractId };
  }

  private async verifySignature(assertion: string, header: ProtectedHeaderParameters, contract: ContractWithKeys) {
    const candidates = contract.keys.filter((k) => k.alg === header.alg && (!header.kid || k.kid === header.kid));
    if (candidates.length === 0) {
      throw new Refusal(unauthenticated(`No active key ${header.kid ?? ""} on contract ${contract.id} matches the assertion. Was the key rotated?`), "unknown_kid");
    }
    for (const k of candidates) {
      try {
        const { payload } = await jwtVerify(assertion, createPublicKey({ key: k.publicJwk as JWK as never, format: "jwk" }), {
          algorithms: [k.alg],
          typ: "JWT",
        });
        return { payload: payload as Record<string, unknown>, keyId: k.id };
      } catch (e) {
        if (e instanceof joseErrors.JWTExpired) throw new Refusal(unauthenticated("The assertion has expired (exp)."), "expired_assertion");
        if (e instanceof joseErrors.JWTClaimValidationFailed) throw new Refusal(unauthenticated(`The assertion's ${e.claim} claim is not valid: ${e.message}`), "bad_claim");
        if (e instanceof joseErrors.JWTInvalid) throw new Refusal(badInput("The assertion's payload must be a JSON object of claims.", "assertion"), "bad_payload");
      }
    }
    throw new Refusal(unauthenticated("The assertion's signature does not verify with the contract's registered public key. Sign with the contract's private key."), "bad_signature");
  }

  /** Resolves a session key to its principal; the key is looked up by hash (see VerifiedSessions). */
  async authenticate(key: string): Promise<SessionPrincipal> {
    const keyHash = sha256Hex(key);
    const known = this.verified.get(keyHash);
    if (known) return known;
    let mark: number;
    let s: SessionWithContract | null;
    let reads = 0;
    // An end announced while it read may have committed after the read: read again. (Requests
    // sent after endSession returned can share this lookup, see infra/coalesce.ts.)
    do {
      mark = this.verified.mark();
      s = await this.repo.findByKeyHash(keyHash);
    } while (mark !== this.verified.mark() && ++reads < 4);
    if (!s) throw unauthenticated("Unknown session key. Establish a session with createSession.");
    const refused = whyNotValid(s);
    if (refused) throw refused;
    const principal: SessionPrincipal = { sessionId: s.id, applicationId: s.contract.applicationId, contractId: s.contract.id, contractKind: s.contract.kind, expiresAt: s.expiresAt };
    this.verified.put(keyHash, principal, mark);
    return principal;
  }

  /** The session is still valid (for SessionEnds: a stream re-reads its session once it watches it). */
  async isLive(sessionId: string): Promise<boolean> {
    const s = await this.repo.findById(sessionId);
    return !!s && !whyNotValid(s);
  }

  async endSession(principal: SessionPrincipal): Promise<boolean> {
    const ended = await this.repo.transaction(async (tx) => {
      const { count } = await this.repo.revoke(tx, principal.sessionId);
      await this.audit.record({ actorType: "APP", actorId: principal.applicationId, action: "session.end", outcome: "SUCCESS", applicationId: principal.applicationId, contractId: principal.contractId, targetId: principal.sessionId }, tx);
      return count > 0;
    });
    // The session's open subscriptions end too, on whichever instance holds them.
    this.ends.announce({ sessionId: principal.sessionId });
    return ended;
  }

  sweep(now = new Date()): Promise<number> {
    return this.repo.deleteExpired(now);
  }
}
