// GET /files/:id — the user's app downloads a file's JWE as a stream, with its
// access token (Authorization: Bearer pbu_…). The GraphQL field postboxFile.ciphertext
// holds the whole JWE in one string (and the JSON response around it); this route
// sends an upload's 1 MiB slices as they are read, so a large file is never whole
// in the server's memory. Same scoping and audit as postboxFile.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Router, type Response } from "express";
import { isAppError, unauthenticated, type AppError } from "../../infra/errors.js";
import { sendError as send } from "../../infra/http/http-errors.js";
import { bearerToken, USER_TOKEN_PREFIX, type Authenticators } from "../../infra/graphql/context.js";
import type { Logger } from "../../infra/logger.js";
import type { UserFilesService } from "./push.files.service.js";

function sendError(res: Response, e: AppError): void {
  send(res, e.httpStatus, e.code, e.message, e.extensions);
}

export function fileDownloadRouter(files: UserFilesService, auth: Pick<Authenticators, "user">, log: Logger): Router {
  const router = Router();
  router.get("/:id", async (req, res, next) => {
    try {
      const token = bearerToken(req.get("authorization"));
      if (!token?.startsWith(`${USER_TOKEN_PREFIX}_`)) {
        return sendError(res, unauthenticated("Send the user's access token from acceptPostbox: `Authorization: Bearer pbu_…`."));
      }
      const file = await files.download(await auth.user(token), String(req.params.id));
      res.status(200).set({
        "content-type": "application/jose",
        "content-length": String(file.size),
        "cache-control": "no-store",
        etag: `"${file.sha256}"`,
        "x-content-type-options": "nosniff",
      });
      // pipeline waits for the client to take each slice, and ends (rejecting) when it
      // goes away; waiting for "drain" alone waited forever for a client that left.
      const bytes = Readable.from((async function* () {
        for await (const text of file.text) yield Buffer.from(text, "latin1");
      })());
      try {
        await pipeline(bytes, res);
      } catch (err) {
        // Headers are gone: cut the response short, so the client sees an incomplete body rather than a wrong one.
        if (res.destroyed && !isAppError(err)) log.info({ pushId: file.id }, "file download ended by the client before its end");
        else log.warn({ err, pushId: file.id }, "file download interrupted");
        res.destroy();
      }
    } catch (e) {
      if (isAppError(e) && !res.headersSent) return sendError(res, e);
      next(e);
    }
  });
  return router;
}
