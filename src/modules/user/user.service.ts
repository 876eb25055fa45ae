// User credentials: what a user's device receives when it accepts a postbox.
// An access token (pbu_…, USER_ACCESS_TTL) and a refresh token (pbr_…, until the
// postbox expires) scoped to that one postbox; both are stored as sha256 only.
// Refresh tokens rotate on use: the old one stops working the moment a new pair
// is issued, and one presented a second time revokes its grant (a copy is in
// other hands). Whoever proves they hold the postbox's private key, by decrypting
// a challenge, gets a new grant. Grants are revoked when their postbox closes or expires.
import { requireServerSecret, type Config } from "../../infra/config.js";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { newSecret, sha256Hex } from "../../infra/crypto.js";
import type { Tx } from "../../infra/db/database.js";
import { AppError, ErrorCode, notFound, unauthenticated } from "../../infra/errors.js";
import { USER_TOKEN_PREFIX, type UserPrincipal } from "../../infra/graphql/context.js";
import { newId } from "../../infra/ids.js";
import type { Logger } from "../../infra/logger.js";
import type { AppPubSub } from "../../infra/pubsub.js";
import type { AuditService } from "../audit/audit.service.js";
import { encryptBytes } from "../push/push.crypto.js";
import { openChallenge, sealChallenge } from "./user.challenge.js";
import { publishUserEvent } from "./user.events.js";
import type { GrantWithPostbox, UserRepository } from "./user.repository.js";

export const REFRESH_TOKEN_PREFIX = "pbr";

export interface IssuedCredential {
  postboxId: string;
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  refreshTokenExpiresAt: Date;
  tokenType: "Bearer";
}

/** A challenge lives this long: enough to decrypt it on a slow device. */
const CHALLENGE_TTL_MS = 5 * 60 * 1000;
/**
 * Exchanged refresh tokens remembered per grant (a device refreshing hourly on a year-long
 * postbox would otherwise leave 8,760 rows). An older one is still caught as a reuse by the
 * grant id it carries (GRANT_OF_TOKEN); the record also serves tokens issued before that.
 */
const USED_REFRESH_KEPT = 100;
/**
 * The grant a refresh token names. Not a secret: whoever knows a grant id (its application,
 * from the audit log) can only get that grant revoked, as closing the postbox would.
 */
const GRANT_OF_TOKEN = /^pbr_(grt_[a-z0-9]{1,40})\./;
/** Live grants per postbox (devices); a reissue beyond it revokes the oldest. */
const MAX_LIVE_GRANTS = 10;

export interface KeyChallenge {
  challengeId: string;
  /** Compact JWE to the postbox key; its plaintext, base64url, is the answer. */
  jwe: string;
  expiresAt: Date;
}

/**
 * UNAUTHENTICATED where the postbox is (or may be) READY and only this device's
 * credential is dead: `extensions.reissue` tells clients that proving the postbox
 * key (userKeyChallenge → reissueUserCredential) gets a new one.
 */
const reissuable = (message: string) => new AppError(ErrorCode.UNAUTHENTICATED, message, { reissue: true });
/** Why a grant of a READY postbox is revoked: a reuse, or newer credentials replaced it (beyond the newest MAX_LIVE_GRANTS). */
const REVOKED_WHY = "This credential was revoked (a refresh token of it was used twice, or newer credentials for this postbox replaced it).";
/** Refuses a postbox that is over (closed, declined, past its expiry): its credentials no longer work. */
function postboxOver(p: { status: string; expiresAt: Date }, now: Date) {
  if (p.status === "READY" && p.expiresAt > now) return undefined;
  return unauthenticated(`The postbox is ${p.status === "READY" ? "EXPIRED" : p.status}; its credentials no longer work.`);
}
const REISSUE_HINT = "Get a new one by proving you hold the postbox key: userKeyChallenge, then reissueUserCredential (the Postbox app does this by itself).";

class Refusal extends Error {
  constructor(readonly error: AppError, readonly reason: string, readonly grant?: GrantWithPostbox) {
    super(error.message);
  }
}

export class UserService {
  constructor(
    private readonly repo: UserRepository,
    private readonly audit: AuditService,
    private readonly config: Config,
    private readonly pubSub: AppPubSub,
    private readonly log: Logger,
  ) {}

  /** Creates the grant inside the acceptance transaction; the tokens are returned once. */
  async issueGrant(tx: Tx, postboxId: string, postboxExpiresAt: Date, now = new Date()): Promise<IssuedCredential & { grantId: string }> {
    const grantId = newId("grt");
    const tokens = this.newTokens(grantId, postboxExpiresAt, now);
    await this.repo.createGrant(tx, {
      id: grantId,
      postboxId,
      accessTokenHash: sha256Hex(tokens.accessToken),
      accessExpiresAt: tokens.accessTokenExpiresAt,
      refreshTokenHash: sha256Hex(tokens.refreshToken),
      refreshExpiresAt: postboxExpiresAt,
    });
    return { grantId, postboxId, ...tokens, refreshTokenExpiresAt: postboxExpiresAt };
  }

  revokeForPostbox(tx: Tx, postboxId: string, at: Date): Promise<number> {
    return this.repo.revokeForPostbox(tx, postboxId, at);
  }

  /** `auth.user` of the GraphQL context: resolves an access token to its postbox. */
  async authenticate(token: string): Promise<UserPrincipal> {
    const g = await this.repo.findByAccessHash(sha256Hex(token));
    if (!g) throw unauthenticated("Unknown access token. Use the token from acceptPostbox or refreshUserToken.");
    if (g.revokedAt && g.postbox.status === "READY") throw reissuable(`${REVOKED_WHY} ${REISSUE_HINT}`);
    if (g.revokedAt) throw unauthenticated(`This access token was revoked: the postbox is ${g.postbox.status}.`);
    const now = Date.now();
    if (g.postbox.expiresAt.getTime() <= now) throw unauthenticated("The postbox of this access token has expired.");
    if (g.accessExpiresAt.getTime() <= now) throw unauthenticated("This access token has expired. Get a new one with refreshUserToken(refreshToken).");
    if (g.postbox.status !== "READY") throw unauthenticated(`This access token is no longer valid: the postbox is ${g.postbox.status}.`);
    return { grantId: g.id, postboxId: g.postbox.id, contractId: g.postbox.contractId, applicationId: g.postbox.contract.applicationId, expiresAt: g.accessExpiresAt };
  }

  /**
   * Whether a grant (a device's credential) still works: not revoked, its postbox READY
   * and unexpired. Checked by grant rather than by token, because the device's refresh
   * rotates its access token while a stream opened with the old one lives on.
   */
  async grantLive(grantId: string): Promise<boolean> {
    const g = await this.repo.findGrant(grantId);
    return !!g && !g.revokedAt && g.postbox.status === "READY" && g.postbox.expiresAt.getTime() > Date.now();
  }

  async refresh(refreshToken: string): Promise<IssuedCredential> {
    try {
      return await this.rotate(refreshToken);
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      await this.audit.record({
        actorType: "USER",
        actorId: e.grant?.id ?? null,
        action: "user.token_refresh",
        outcome: "REFUSED",
        reason: `${e.error.code}:${e.reason}`,
        applicationId: e.grant?.postbox.contract.applicationId ?? null,
        contractId: e.grant?.postbox.contractId ?? null,
        postboxId: e.grant?.postboxId ?? null,
      });
      throw e.error;
    }
  }

  private async rotate(refreshToken: string, again = true): Promise<IssuedCredential> {
    if (typeof refreshToken !== "string" || !refreshToken.startsWith(`${REFRESH_TOKEN_PREFIX}_`) || refreshToken.length > 200) {
      throw new Refusal(unauthenticated("That is not a refresh token (they start with pbr_)."), "malformed");
    }
    const oldHash = sha256Hex(refreshToken);
    const g = await this.repo.findByRefreshHash(oldHash);
    if (!g) {
      const named = GRANT_OF_TOKEN.exec(refreshToken)?.[1];
      const reused = (await this.repo.findByUsedRefreshHash(oldHash)) ?? (named ? await this.repo.findGrant(named) : null);
      if (!reused) throw new Refusal(reissuable(`Unknown refresh token (from an old backup, or not issued here). ${REISSUE_HINT}`), "unknown");
      // Exchanged once already: whoever holds the current pair got it with this token, and
      // we cannot tell which holder is the user's device. Stop both.
      await this.repo.transaction((tx) => this.repo.revokeGrant(tx, reused.id, new Date()));
      publishUserEvent(this.pubSub, this.log, { kind: "access", postboxId: reused.postboxId }); // its live streams end
      // A postbox that is over takes no new credential either: say so, rather than send the device to reissue.
      const over = postboxOver(reused.postbox, new Date());
      if (over) throw new Refusal(over, "postbox_inactive", reused);
      throw new Refusal(reissuable(`This refresh token was already used once, so a copy of it exists elsewhere; its credential has been revoked. ${REISSUE_HINT}`), "reused", reused);
    }
    const now = new Date();
    if (g.revokedAt && g.postbox.status === "READY") throw new Refusal(reissuable(`${REVOKED_WHY} ${REISSUE_HINT}`), "revoked", g);
    if (g.revokedAt) throw new Refusal(unauthenticated(`This credential was revoked: the postbox is ${g.postbox.status}.`), "revoked", g);
    if (g.refreshExpiresAt <= now || g.postbox.expiresAt <= now) throw new Refusal(unauthenticated("This refresh token has expired with its postbox."), "expired", g);
    const over = postboxOver(g.postbox, now);
    if (over) throw new Refusal(over, "postbox_inactive", g);

    const tokens = this.newTokens(g.id, g.postbox.expiresAt, now);
    const rotated = await this.repo.transaction(async (tx) => {
      const n = await this.repo.rotate(tx, g.id, oldHash, {
        accessTokenHash: sha256Hex(tokens.accessToken),
        accessExpiresAt: tokens.accessTokenExpiresAt,
        refreshTokenHash: sha256Hex(tokens.refreshToken),
      });
      if (n !== 1) return false;
      await this.repo.recordUsedRefresh(tx, g.id, oldHash, USED_REFRESH_KEPT);
      await this.audit.record(
        { actorType: "USER", actorId: g.id, action: "user.token_refresh", outcome: "SUCCESS", applicationId: g.postbox.contract.applicationId, contractId: g.postbox.contractId, postboxId: g.postboxId, targetId: g.id },
        tx,
      );
      return true;
    });
    if (!rotated) {
      // Between the read and the update another request rotated the grant with this same
      // token (or revoked it). Two uses of one token, however close, are a reuse: read it
      // again, and the reuse path above revokes the grant (a revocation gives its reason).
      if (again) return this.rotate(refreshToken, false);
      throw new Refusal(unauthenticated("This refresh token was just used by another request; each refresh token works once."), "concurrent_use", g);
    }
    return { postboxId: g.postboxId, ...tokens, refreshTokenExpiresAt: g.refreshExpiresAt };
  }

  /**
   * userKeyChallenge: a random code encrypted to the postbox's key. Only the holder
   * of the user's private key can answer it. Anyone may ask (no credential: that is
   * the point); it costs them a rate-limited request and reveals nothing.
   */
  async keyChallenge(postboxId: string, now = new Date()): Promise<KeyChallenge> {
    const pb = typeof postboxId === "string" && postboxId.length <= 64 ? await this.repo.findPostboxKey(postboxId) : null;
    if (!pb || pb.status !== "READY" || pb.expiresAt <= now || !pb.publicJwk || !pb.publicKeyThumbprint) {
      throw notFound("A READY postbox with that id");
    }
    const code = randomBytes(32);
    const { jwe } = await encryptBytes({ jwk: pb.publicJwk as Record<string, unknown>, kid: pb.publicKeyThumbprint }, code);
    const expiresAt = new Date(now.getTime() + CHALLENGE_TTL_MS);
    const answerHash = createHash("sha256").update(code.toString("base64url")).digest();
    const challengeId = sealChallenge(this.secret(), { nonce: randomBytes(16).toString("base64url"), postboxId: pb.id, answerHash, expiresAt });
    return { challengeId, jwe, expiresAt };
  }

  /** reissueUserCredential: a new grant for whoever decrypted the challenge. Each challenge takes one answer. */
  async reissue(challengeId: string, answer: string): Promise<IssuedCredential> {
    let postboxId: string | null = null;
    try {
      const c = openChallenge(this.secret(), challengeId);
      const now = new Date();
      // Marked used before the answer is looked at: a wrong answer uses the challenge up too.
      if (!c || c.expiresAt <= now || !(await this.repo.useChallenge(c.nonce, c.expiresAt))) {
        throw new Refusal(unauthenticated("Unknown, used or expired challenge: ask for a new one with userKeyChallenge."), "unknown_challenge");
      }
      postboxId = c.postboxId;
      if (typeof answer !== "string" || !timingSafeEqual(createHash("sha256").update(answer).digest(), c.answerHash)) {
        throw new Refusal(unauthenticated("Wrong answer: it must be the challenge JWE's plaintext, base64url, decrypted with the postbox's private key. Ask for a new challenge."), "wrong_answer");
      }
      const pb = await this.repo.findPostboxKey(c.postboxId);
      if (!pb || pb.status !== "READY" || pb.expiresAt <= now) throw new Refusal(unauthenticated(`The postbox is ${pb?.status ?? "gone"}; its credentials no longer work.`), "postbox_inactive");
      const credential = await this.repo.transaction(async (tx) => {
        // Checked above outside the transaction: a close or expiry that commits meanwhile would
        // otherwise miss this grant. Locked, the close either came first or waits and revokes it.
        if (!(await this.repo.lockReadyPostbox(tx, pb.id, now))) throw new Refusal(unauthenticated("The postbox is no longer READY; its credentials no longer work."), "postbox_inactive");
        const issued = await this.issueGrant(tx, pb.id, pb.expiresAt, now);
        await this.repo.revokeAllButNewest(tx, pb.id, MAX_LIVE_GRANTS, now);
        await this.audit.record(
          { actorType: "USER", actorId: issued.grantId, action: "user.reissue", outcome: "SUCCESS", applicationId: pb.contract.applicationId, contractId: pb.contractId, postboxId: pb.id, targetId: issued.grantId },
          tx,
        );
        const { grantId: _grantId, ...credential } = issued;
        return credential;
      });
      publishUserEvent(this.pubSub, this.log, { kind: "access", postboxId: pb.id }); // the oldest grant may have been revoked
      return credential;
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      const pb = postboxId ? await this.repo.findPostboxKey(postboxId) : null;
      await this.audit.record({
        actorType: "USER",
        action: "user.reissue",
        outcome: "REFUSED",
        reason: `${e.error.code}:${e.reason}`,
        applicationId: pb?.contract.applicationId ?? null,
        contractId: pb?.contractId ?? null,
        postboxId: pb?.id ?? null,
      });
      throw e.error;
    }
  }

  /** Safety net: no live grant may outlive its postbox's READY state. Also drops the record of expired challenges and dead grants' used tokens. */
  async sweep(now = new Date()): Promise<number> {
    const revoked = await this.repo.revokeOnInactivePostboxes(now);
    await this.repo.deleteExpiredChallenges(now);
    await this.repo.deleteUsedRefreshOfDeadGrants(now);
    return revoked;
  }

  /** The key challenge ids are sealed with. */
  private secret(): string {
    return requireServerSecret(this.config.SERVER_SECRET);
  }

  private newTokens(grantId: string, postboxExpiresAt: Date, now: Date) {
    const accessTokenExpiresAt = new Date(Math.min(now.getTime() + this.config.USER_ACCESS_TTL, postboxExpiresAt.getTime()));
    return {
      accessToken: newSecret(USER_TOKEN_PREFIX),
      accessTokenExpiresAt,
      // Named after its grant (pbr_<grantId>.<secret>): an old token of a grant is then known
      // as a reuse even once its hash has left the used-token record (see USED_REFRESH_KEPT).
      refreshToken: `${REFRESH_TOKEN_PREFIX}_${grantId}.${randomBytes(32).toString("base64url")}`,
      refreshTokenExpiresAt: postboxExpiresAt,
      tokenType: "Bearer" as const,
    };
  }
}
