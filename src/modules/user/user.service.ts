// User credentials: what a user's device receives when it accepts a postbox.
// An access token (pbu_…, USER_ACCESS_TTL) and a refresh token (pbr_…, until the
// postbox expires) scoped to that one postbox; both are stored as sha256 only.
// Refresh tokens rotate on use: the old one stops working the moment a new pair
// is issued. Grants are revoked when their postbox closes or expires.
import type { Config } from "../../infra/config.js";
import { newSecret, sha256Hex } from "../../infra/crypto.js";
import type { Tx } from "../../infra/db/database.js";
import { unauthenticated, type AppError } from "../../infra/errors.js";
import { USER_TOKEN_PREFIX, type UserPrincipal } from "../../infra/graphql/context.js";
import { newId } from "../../infra/ids.js";
import type { AuditService } from "../audit/audit.service.js";
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
  ) {}

  /** Creates the grant inside the acceptance transaction; the tokens are returned once. */
  async issueGrant(tx: Tx, postboxId: string, postboxExpiresAt: Date, now = new Date()): Promise<IssuedCredential & { grantId: string }> {
    const grantId = newId("grt");
    const tokens = this.newTokens(postboxExpiresAt, now);
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
    if (g.revokedAt) throw unauthenticated(`This access token was revoked: the postbox is ${g.postbox.status}.`);
    const now = Date.now();
    if (g.postbox.expiresAt.getTime() <= now) throw unauthenticated("The postbox of this access token has expired.");
    if (g.accessExpiresAt.getTime() <= now) throw unauthenticated("This access token has expired. Get a new one with refreshUserToken(refreshToken).");
    if (g.postbox.status !== "READY") throw unauthenticated(`This access token is no longer valid: the postbox is ${g.postbox.status}.`);
    return { grantId: g.id, postboxId: g.postbox.id, contractId: g.postbox.contractId, applicationId: g.postbox.contract.applicationId };
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

  private async rotate(refreshToken: string): Promise<IssuedCredential> {
    if (typeof refreshToken !== "string" || !refreshToken.startsWith(`${REFRESH_TOKEN_PREFIX}_`) || refreshToken.length > 200) {
      throw new Refusal(unauthenticated("That is not a refresh token (they start with pbr_)."), "malformed");
    }
    const oldHash = sha256Hex(refreshToken);
    const g = await this.repo.findByRefreshHash(oldHash);
    if (!g) throw new Refusal(unauthenticated("Unknown refresh token. It may have been used already: each refresh token works once."), "unknown");
    const now = new Date();
    if (g.revokedAt) throw new Refusal(unauthenticated(`This credential was revoked: the postbox is ${g.postbox.status}.`), "revoked", g);
    if (g.refreshExpiresAt <= now || g.postbox.expiresAt <= now) throw new Refusal(unauthenticated("This refresh token has expired with its postbox."), "expired", g);
    if (g.postbox.status !== "READY") throw new Refusal(unauthenticated(`The postbox is ${g.postbox.status}; its credentials no longer work.`), "postbox_inactive", g);

    const tokens = this.newTokens(g.postbox.expiresAt, now);
    await this.repo.transaction(async (tx) => {
      const n = await this.repo.rotate(tx, g.id, oldHash, {
        accessTokenHash: sha256Hex(tokens.accessToken),
        accessExpiresAt: tokens.accessTokenExpiresAt,
        refreshTokenHash: sha256Hex(tokens.refreshToken),
      });
      if (n !== 1) throw new Refusal(unauthenticated("This refresh token was just used by another request; each refresh token works once."), "concurrent_use", g);
      await this.audit.record(
        { actorType: "USER", actorId: g.id, action: "user.token_refresh", outcome: "SUCCESS", applicationId: g.postbox.contract.applicationId, contractId: g.postbox.contractId, postboxId: g.postboxId, targetId: g.id },
        tx,
      );
    });
    return { postboxId: g.postboxId, ...tokens, refreshTokenExpiresAt: g.refreshExpiresAt };
  }

  /** Safety net: no live grant may outlive its postbox's READY state. */
  sweep(now = new Date()): Promise<number> {
    return this.repo.revokeOnInactivePostboxes(now);
  }

  private newTokens(postboxExpiresAt: Date, now: Date) {
    const accessTokenExpiresAt = new Date(Math.min(now.getTime() + this.config.USER_ACCESS_TTL, postboxExpiresAt.getTime()));
    return {
      accessToken: newSecret(USER_TOKEN_PREFIX),
      accessTokenExpiresAt,
      refreshToken: newSecret(REFRESH_TOKEN_PREFIX),
      refreshTokenExpiresAt: postboxExpiresAt,
      tokenType: "Bearer" as const,
    };
  }
}
