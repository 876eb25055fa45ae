// Admin API routes for applications and contracts (see src/infra/http/admin.ts).
import type { Router } from "express";
import { adminRoute } from "../../infra/http/admin.js";
import type { ApplicationService, ContractInput } from "./application.service.js";
import type { ApplicationWithContracts } from "./application.repository.js";

function present(app: ApplicationWithContracts) {
  return {
    appId: app.id,
    name: app.name,
    createdAt: app.createdAt,
    disabledAt: app.disabledAt,
    contracts: app.contracts.map((c) => ({
      contractId: c.id,
      kind: c.kind,
      name: c.name,
      postboxMode: c.postboxMode,
      postboxTtlSeconds: c.postboxTtlSeconds,
      callbackUrls: c.callbackUrls,
      webhookUrl: c.webhookEndpoint?.url ?? null,
      keys: c.keys.map((k) => ({ keyId: k.kid, alg: k.alg, createdAt: k.createdAt, revokedAt: k.revokedAt })),
    })),
  };
}

export function applicationAdminRoutes(service: ApplicationService) {
  return (r: Router) => {
    r.post("/applications", adminRoute((req) => service.createApplication(req.body ?? {}), 201));
    r.get("/applications", adminRoute(async () => (await service.list()).map(present)));
    r.get("/applications/:appId", adminRoute(async (req) => present(await service.get(String(req.params.appId)))));
    r.post("/applications/:appId/disable", adminRoute(async (req) => present(await service.setDisabled(String(req.params.appId), true).then(() => service.get(String(req.params.appId))))));
    r.post("/applications/:appId/enable", adminRoute(async (req) => present(await service.setDisabled(String(req.params.appId), false).then(() => service.get(String(req.params.appId))))));
    r.post("/applications/:appId/contracts", adminRoute((req) => service.addContract(String(req.params.appId), (req.body ?? {}) as ContractInput), 201));
    r.post("/contracts/:contractId/keys", adminRoute((req) => service.rotateKey(String(req.params.contractId), req.body?.publicKey, req.body?.alg), 201));
    r.patch("/contracts/:contractId", adminRoute(async (req) => {
      const c = await service.updateContract(String(req.params.contractId), req.body ?? {});
      return { contractId: c.id, postboxMode: c.postboxMode, postboxTtlSeconds: c.postboxTtlSeconds, callbackUrls: c.callbackUrls };
    }));
  };
}
