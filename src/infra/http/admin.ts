// The operator's admin API (JSON over HTTP under /admin), used by the CLI so that
// it never opens the embedded database itself. Authenticated by the admin token.
import { Router, json, type NextFunction, type Request, type Response } from "express";
import { safeEqual } from "../crypto.js";
import { ErrorCode, isAppError } from "../errors.js";
import { mapPrismaError } from "../db/prisma-errors.js";
import type { Logger } from "../logger.js";

export type AdminHandler = (req: Request) => Promise<unknown>;

const BODY_LIMIT = 1024 * 1024; // bytes

/** Wraps a handler: JSON result, or `{ error: { code, message } }` with a matching status. */
export function adminRoute(handler: AdminHandler, status = 200) {
  return async (req: Request, res: Response, next: NextFunction) => {
    try {
      res.status(status).json(await handler(req));
    } catch (e) {
      next(e);
    }
  };
}

export function createAdminRouter(adminToken: string, log: Logger, register: ((r: Router) => void)[]): Router {
  const router = Router();
  // The token first, the body after: without it a request's body is never read, so a
  // large or malformed one gets 401 like any other, not a parser error.
  router.use((req, res, next) => {
    const header = req.get("authorization") ?? "";
    const token = header.startsWith("Bearer ") ? header.slice(7) : "";
    if (!token || !safeEqual(token, adminToken)) {
      res.status(401).json({ error: { code: ErrorCode.UNAUTHENTICATED, message: "Admin API: send Authorization: Bearer <admin token> (ADMIN_TOKEN, or the file admin-token in the data directory)." } });
      return;
    }
    next();
  });
  router.use(json({ limit: BODY_LIMIT }));
  for (const r of register) r(router);
  router.use((req, res) => {
    res.status(404).json({ error: { code: ErrorCode.NOT_FOUND, message: `No admin route ${req.method} ${req.path}.` } });
  });
  router.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = mapPrismaError(err);
    if (isAppError(e)) {
      res.status(e.httpStatus).json({ error: { code: e.code, message: e.message, ...(e.extensions.field ? { field: e.extensions.field } : {}) } });
      return;
    }
    // body-parser's errors are the client's: answered with their 4xx, not logged as failures.
    const parser = err as { type?: string; status?: number; expose?: boolean; message?: string };
    if (parser.type === "entity.too.large") {
      res.status(413).json({ error: { code: ErrorCode.PAYLOAD_TOO_LARGE, message: `The request body is larger than the admin API accepts (${BODY_LIMIT} bytes).` } });
      return;
    }
    if (parser.type === "entity.parse.failed") {
      res.status(400).json({ error: { code: ErrorCode.BAD_USER_INPUT, message: "The request body is not valid JSON." } });
      return;
    }
    if (typeof parser.type === "string" && parser.expose && Number(parser.status) >= 400 && Number(parser.status) < 500) {
      // Such as an unsupported charset or Content-Encoding, or a body cut off.
      res.status(Number(parser.status)).json({ error: { code: ErrorCode.BAD_USER_INPUT, message: `The request body could not be read: ${parser.message}.` } });
      return;
    }
    log.error({ err }, "admin request failed");
    res.status(500).json({ error: { code: ErrorCode.INTERNAL_SERVER_ERROR, message: "Internal server error." } });
  });
  return router;
}
