// Admin API routes for a contract's webhook endpoint (used by `npm run cli -- webhook …`).
import type { Router } from "express";
import { adminRoute } from "../../infra/http/admin.js";
import { badInput } from "../../infra/errors.js";
import type { DeliveryStatus, WebhookService } from "./webhook.service.js";

const STATUSES = ["PENDING", "SUCCEEDED", "FAILED"];

export function webhookAdminRoutes(service: WebhookService) {
  return (r: Router) => {
    r.put("/contracts/:contractId/webhook", adminRoute(async (req) => {
      const actor = await service.adminActor(String(req.params.contractId));
      return { contractId: actor.contractId, ...(await service.setEndpoint(actor, req.body?.url)) };
    }));
    r.get("/contracts/:contractId/webhook", adminRoute(async (req) => {
      const actor = await service.adminActor(String(req.params.contractId));
      return { contractId: actor.contractId, webhook: await service.get(actor.contractId) };
    }));
    r.delete("/contracts/:contractId/webhook", adminRoute(async (req) => {
      const actor = await service.adminActor(String(req.params.contractId));
      return { contractId: actor.contractId, deleted: await service.deleteEndpoint(actor) };
    }));
    r.post("/contracts/:contractId/webhook/rotate-secret", adminRoute(async (req) => {
      const actor = await service.adminActor(String(req.params.contractId));
      return { contractId: actor.contractId, ...(await service.rotateSecret(actor)) };
    }));
    r.get("/contracts/:contractId/webhook/deliveries", adminRoute(async (req) => {
      const actor = await service.adminActor(String(req.params.contractId));
      const q = req.query as Record<string, string | undefined>;
      if (q.status !== undefined && !STATUSES.includes(q.status)) throw badInput(`status must be one of ${STATUSES.join(", ")}.`, "status");
      const first = q.first === undefined ? undefined : Number(q.first);
      const conn = await service.deliveries(actor.contractId, { first, after: q.after, status: q.status as DeliveryStatus | undefined });
      return {
        contractId: actor.contractId,
        deliveries: conn.edges.map(({ node: d }) => ({
          id: d.id,
          eventType: d.eventType,
          status: d.status,
          createdAt: d.createdAt,
          nextAttemptAt: d.status === "PENDING" ? d.nextAttemptAt : null,
          completedAt: d.completedAt,
          attempts: d.attempts.map((a) => ({ number: a.number, at: a.at, statusCode: a.statusCode, error: a.error, durationMs: a.durationMs })),
        })),
        pageInfo: conn.pageInfo,
      };
    }));
  };
}
