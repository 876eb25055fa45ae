// Admin API route for the audit chain (see src/infra/http/admin.ts): the CLI's
// `audit verify` calls it.
import type { Router } from "express";
import { adminRoute } from "../../infra/http/admin.js";
import { parseCheckpoint, type AuditService } from "./audit.service.js";

export function auditAdminRoutes(audit: AuditService, retentionMs: number) {
  return (r: Router) => {
    // 200 either way: a broken chain is the answer, not a failure of the request.
    // ?checkpoint=<seq>:<hash>@<time> (repeatable): heads reported by earlier runs, to check against.
    r.get(
      "/audit/verify",
      adminRoute((req) => {
        const raw = req.query.checkpoint;
        const given = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
        return audit.verify(
          given.map((c) => parseCheckpoint(String(c))),
          { now: new Date(), retentionMs },
        );
      }),
    );
  };
}
