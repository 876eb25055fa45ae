// Serves the user's web app (built by `npm run build:web` into web/dist):
// the inbox at /app, the consent page at /consent/<code> (same single-page app),
// hashed assets under /app/assets. Every response carries a strict Content
// Security Policy (own origin only, no inline script), no-referrer (the consent
// code is in the path) and anti-framing headers.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import express, { type Response, type Router } from "express";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";

export const WEB_DIST_DIR = fileURLToPath(new URL("../../../web/dist", import.meta.url));

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  // Decrypted images are shown from object URLs.
  "img-src 'self' blob:",
  // fetch to /graphql; 'self' also covers same-origin WebSockets.
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

function securityHeaders(res: Response) {
  res.setHeader("Content-Security-Policy", CONTENT_SECURITY_POLICY);
  res.setHeader("Referrer-Policy", "no-referrer");
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("X-Frame-Options", "DENY");
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
  res.setHeader("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()");
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Postbox</title><h1>The web app is not built</h1><p>Run <code>npm run build:web</code> (npm install and npm run build do it), then reload.</p>`;

/** The path part of PUBLIC_URL ("" or e.g. "/postbox"), where a reverse proxy serves this server. */
function basePathOf(publicUrl: string): string {
  try {
    return new URL(publicUrl).pathname.replace(/\/+$/, "");
  } catch {
    return "";
  }
}

export function createWebRouter(log: Logger, config: Pick<Config, "PUBLIC_URL">, distDir = WEB_DIST_DIR): Router {
  const router = express.Router();
  const indexFile = path.join(distDir, "index.html");
  // Read per request only until found, so a build made after start is picked up.
  let indexHtml: string | undefined;
  if (!existsSync(indexFile)) log.warn({ distDir }, "web app not built: /app and /consent answer 503 until `npm run build:web` runs");

  const sendIndex = async (_req: express.Request, res: Response) => {
    securityHeaders(res);
    // The page may hold a consent code in its URL: never cache it anywhere.
    res.setHeader("Cache-Control", "no-store");
    if (indexHtml === undefined) {
      try {
        indexHtml = await readFile(indexFile, "utf8");
      } catch {
        res.status(503).type("html").send(NOT_BUILT);
        return;
      }
    }
    // The built page links /app/...; behind a proxy prefix those links move under it.
    const base = basePathOf(config.PUBLIC_URL);
    res.status(200).type("html").send(base ? indexHtml.replaceAll('="/app', `="${base}/app`) : indexHtml);
  };

  router.use((req, res, next) => {
    if (req.path === "/app" || req.path.startsWith("/app/") || req.path === "/consent" || req.path.startsWith("/consent/")) securityHeaders(res);
    next();
  });
  router.get("/", (_req, res) => {
    res.redirect(302, `${basePathOf(config.PUBLIC_URL)}/app`);
  });
  router.use(
    "/app/assets",
    express.static(path.join(distDir, "assets"), {
      index: false,
      redirect: false,
      fallthrough: true,
      dotfiles: "ignore",
      setHeaders(res, file) {
        // Bundles carry a content hash in their names, so they never change; the icon does not.
        res.setHeader("Cache-Control", /-[A-Z0-9]{8}\.(js|css)(\.map|\.LEGAL\.txt)?$/.test(file) ? "public, max-age=31536000, immutable" : "public, max-age=3600");
      },
    }),
    (_req: express.Request, res: Response) => {
      res.status(404).type("text").send("Not found");
    },
  );
  router.get(["/app", "/app/", "/consent", "/consent/:code"], sendIndex);
  // Anything else under /app is a view of the single-page app (e.g. a bookmark).
  router.get("/app/{*rest}", sendIndex);
  return router;
}
