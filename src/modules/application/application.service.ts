// Operator-side management of applications, their contracts and public keys.
// Reached through the admin API (application.admin.ts) that the CLI calls.
import type { Config } from "../../infra/config.js";
import { badInput, conflict, notFound } from "../../infra/errors.js";
import { newId } from "../../infra/ids.js";
import { checkOutboundUrl } from "../../infra/url-policy.js";
import type { AuditService } from "../audit/audit.service.js";
import { parsePublicKey } from "./application.keys.js";
import type { ApplicationRepository, ApplicationWithContracts } from "./application.repository.js";
import type { SessionEnds } from "../session/session.events.js";
import type { SessionRepository } from "../session/session.repository.js";

export type ContractKindName = "WRITE" | "READ";
export type PostboxModeName = "ONE_OFF" | "ONGOING";

export interface ContractInput {
  kind?: ContractKindName;
  name?: string;
  postboxMode?: PostboxModeName;
  postboxTtlSeconds?: number;
  callbackUrls?: string[];
  publicKey: unknown;
  alg?: string;
}

export interface ContractSettings {
  postboxMode?: PostboxModeName;
  postboxTtlSeconds?: number;
  callbackUrls?: string[];
}

export interface CreatedContract {
  contractId: string;
  kind: ContractKindName;
  keyId: string;
  alg: string;
}

export class ApplicationService {
  constructor(
    private readonly repo: ApplicationRepository,
    private readonly audit: AuditService,
    private readonly config: Config,
    private readonly sessionEnds: SessionEnds,
    private readonly sessions: SessionRepository,
  ) {}

  async createApplication(input: { name: string } & ContractInput): Promise<{ appId: string; name: string } & CreatedContract> {
    const name = typeof input.name === "string" ? input.name.trim() : "";
    if (!name || name.length > 200) throw badInput("name is required (1–200 characters).", "name");
    const prepared = await this.prepareContract(input);
    const appId = newId("app");
    const contract = await this.repo.transaction(async (tx) => {
      await this.repo.createApplication(tx, { id: appId, name });
      const c = await this.insertContract(tx, appId, prepared);
      await this.audit.record({ actorType: "ADMIN", action: "application.create", outcome: "SUCCESS", applicationId: appId, contractId: c.contractId, detail: { kind: c.kind, alg: c.alg, keyId: c.keyId } }, tx);
      return c;
    });
    return { appId, name, ...contract };
  }

  async addContract(appId: string, input: ContractInput): Promise<CreatedContract> {
    const app = await this.repo.findApplication(appId);
    if (!app) throw notFound("Application", appId);
    const prepared = await this.prepareContract(input);
    return this.repo.transaction(async (tx) => {
      const c = await this.insertContract(tx, appId, prepared);
      await this.audit.record({ actorType: "ADMIN", action: "contract.create", outcome: "SUCCESS", applicationId: appId, contractId: c.contractId, detail: { kind: c.kind, alg: c.alg, keyId: c.keyId } }, tx);
      return c;
    });
  }

  /**
   * Registers a new key for the contract and revokes the previous ones. The contract's
   * open sessions end too: a key is rotated because it may have leaked, and a session
   * signed with it would otherwise outlive it (until SESSION_TTL).
   */
  async rotateKey(contractId: string, publicKey: unknown, alg?: string): Promise<{ contractId: string; keyId: string; alg: string; sessionsEnded: number }> {
    const contract = await this.repo.findContract(contractId);
    if (!contract) throw notFound("Contract", contractId);
    const key = await parsePublicKey(publicKey, alg);
    const rotated = await this.repo.transaction(async (tx) => {
      const id = newId("key");
      try {
        await this.repo.addKey(tx, { id, contractId, kid: key.kid, alg: key.alg, publicJwk: key.publicJwk as object });
      } catch (e) {
        if ((e as { code?: string }).code === "P2002") throw conflict("That key is already registered on this contract; generate a new key pair to rotate.");
        throw e;
      }
      await this.repo.revokeKeysExcept(tx, contractId, id);
      const sessionsEnded = await this.sessions.revokeAll(tx, { contractId });
      await this.audit.record({ actorType: "ADMIN", action: "contract.key.rotate", outcome: "SUCCESS", applicationId: contract.applicationId, contractId, detail: { keyId: key.kid, alg: key.alg, sessionsEnded } }, tx);
      return { contractId, keyId: key.kid, alg: key.alg, sessionsEnded };
    });
    this.sessionEnds.announce({ contractId });
    return rotated;
  }

  async updateContract(contractId: string, settings: ContractSettings) {
    const contract = await this.repo.findContract(contractId);
    if (!contract) throw notFound("Contract", contractId);
    const data = this.validateSettings(settings);
    return this.repo.transaction(async (tx) => {
      const updated = await this.repo.updateContract(tx, contractId, data);
      await this.audit.record({ actorType: "ADMIN", action: "contract.update", outcome: "SUCCESS", applicationId: contract.applicationId, contractId }, tx);
      return updated;
    });
  }

  async setDisabled(appId: string, disabled: boolean) {
    const app = await this.repo.findApplication(appId);
    if (!app) throw notFound("Application", appId);
    const updated = await this.repo.transaction(async (tx) => {
      const row = await this.repo.setApplicationDisabled(tx, appId, disabled ? new Date() : null);
      // Ended, not only refused while disabled: enabling the application again must not bring them back.
      const sessionsEnded = disabled ? await this.sessions.revokeAll(tx, { applicationId: appId }) : 0;
      await this.audit.record({ actorType: "ADMIN", action: disabled ? "application.disable" : "application.enable", outcome: "SUCCESS", applicationId: appId, ...(disabled ? { detail: { sessionsEnded } } : {}) }, tx);
      return row;
    });
    // A disabled application's sessions are ended; their open subscriptions end as well.
    if (disabled) this.sessionEnds.announce({ applicationId: appId });
    return updated;
  }

  list(): Promise<ApplicationWithContracts[]> {
    return this.repo.listApplications();
  }

  async get(appId: string): Promise<ApplicationWithContracts> {
    const app = await this.repo.findApplication(appId);
    if (!app) throw notFound("Application", appId);
    return app;
  }

  private async prepareContract(input: ContractInput) {
    const kind = input.kind ?? "WRITE";
    if (kind !== "WRITE" && kind !== "READ") throw badInput("kind must be WRITE or READ.", "kind");
    const key = await parsePublicKey(input.publicKey, input.alg);
    if (kind === "READ" && key.alg === "EdDSA") {
      throw badInput("A READ contract's key also receives data encrypted by users: use an RSA or P-256 key, not Ed25519.", "publicKey");
    }
    const settings = this.validateSettings(input);
    const mode = settings.postboxMode ?? "ONE_OFF";
    return {
      kind,
      name: input.name?.toString().slice(0, 200),
      key,
      postboxMode: mode,
      postboxTtlSeconds: settings.postboxTtlSeconds ?? Math.round((mode === "ONGOING" ? this.config.POSTBOX_TTL_ONGOING : this.config.POSTBOX_TTL_ONE_OFF) / 1000),
      callbackUrls: settings.callbackUrls ?? [],
    };
  }

  private async insertContract(tx: Parameters<Parameters<ApplicationRepository["transaction"]>[0]>[0], appId: string, p: Awaited<ReturnType<ApplicationService["prepareContract"]>>): Promise<CreatedContract> {
    const contractId = newId("ctr");
    await this.repo.createContract(tx, {
      id: contractId,
      applicationId: appId,
      kind: p.kind,
      name: p.name,
      postboxMode: p.postboxMode,
      postboxTtlSeconds: p.postboxTtlSeconds,
      callbackUrls: p.callbackUrls,
    });
    await this.repo.addKey(tx, { id: newId("key"), contractId, kid: p.key.kid, alg: p.key.alg, publicJwk: p.key.publicJwk as object });
    return { contractId, kind: p.kind, keyId: p.key.kid, alg: p.key.alg };
  }

  private validateSettings(s: ContractSettings) {
    const out: ContractSettings = {};
    if (s.postboxMode !== undefined) {
      if (s.postboxMode !== "ONE_OFF" && s.postboxMode !== "ONGOING") throw badInput("postboxMode must be ONE_OFF or ONGOING.", "postboxMode");
      out.postboxMode = s.postboxMode;
    }
    if (s.postboxTtlSeconds !== undefined) {
      const max = Math.floor(this.config.POSTBOX_MAX_TTL / 1000);
      if (!Number.isInteger(s.postboxTtlSeconds) || s.postboxTtlSeconds < 60 || s.postboxTtlSeconds > max) {
        throw badInput(`postboxTtlSeconds must be a whole number from 60 to ${max}.`, "postboxTtlSeconds");
      }
      out.postboxTtlSeconds = s.postboxTtlSeconds;
    }
    if (s.callbackUrls !== undefined) {
      if (!Array.isArray(s.callbackUrls) || s.callbackUrls.length > 20) throw badInput("callbackUrls must be a list of at most 20 URLs.", "callbackUrls");
      out.callbackUrls = s.callbackUrls.map((u) => checkOutboundUrl(String(u), "callbackUrls", this.config.ALLOW_PRIVATE_URLS));
    }
    return out;
  }
}
