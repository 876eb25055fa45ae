// Admin API route for the audit chain (see src/infra/http/admin.ts): the CLI's
// `audit verify` calls it.
import type { Router } from "express";
import { adminRoute } from "../../infra/http/admin.js";
import type { AuditService } from "./audit.service.js";

export function auditAdminRoutes(audit: AuditService) {
  return (r: Router) => {
    // 200 either way: a broken chain is the answer, not a failure of the request.
    r.get("/audit/verify", adminRoute(() => audit.verify()));
  };
}
