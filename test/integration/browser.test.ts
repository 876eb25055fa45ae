// The user's web app in a real browser (Debian's Chromium driven by
// playwright-core), against a real server: the app creates a postbox → the
// browser opens the consent link and accepts (key made in the browser) → a
// subscriber sees READY → the app pushes a text file and a PNG → the inbox shows
// them decrypted → the user acknowledges → the app sees DELIVERED → the app asks
// for data → the browser shares a file → the app decrypts it with its READ
// private key to the same bytes. Also: the key backup restores in a second
// browser context, the link states (used, unknown, expired, network failure),
// an accept whose answer is lost (the key saved first, proven on a retry), the inbox staying live across token renewals and a network outage, and the
// security headers the app is served with.
//
// Runs in the pglite project only (jest.config.js): what it tests is the browser ↔ API contract,
// which does not depend on the database (the modules' own integration tests
// cover both databases), and Chromium is the most expensive thing in the suite
// on a 2-core machine. It also rebuilds web/dist when the sources are newer,
// which must not happen from two projects at once.
import { afterAll, beforeAll, describe, expect, it, jest } from "@jest/globals";
import { spawnSync } from "node:child_process";
import { createPrivateKey, randomBytes } from "node:crypto";
import { existsSync, statSync, readdirSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync, crc32 } from "node:zlib";
import { buildSchema, parse, validate } from "graphql";
import { compactDecrypt, exportJWK } from "jose";
import { chromium, type Browser, type BrowserContext, type Page, type Request, type Route } from "playwright-core";
import { request } from "undici";
import express from "express";
import { createWebRouter } from "../../src/infra/http/web.js";
import { createLogger } from "../../src/infra/logger.js";
import { PUSH_DATA, addContract, createSession, encryptForPostbox, registerApp, type TestApp } from "../helpers/factories.js";
import { relay } from "../helpers/relay.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { collect, wsClient } from "../helpers/ws.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = path.join(ROOT, "test-artifacts");
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const PHONE = { width: 390, height: 844 };

// ---------------------------------------------------------------------------
// helpers

/** A valid RGBA PNG drawn by `pixel(x, y)`, built by hand (signature, IHDR, one IDAT, IEND). */
function makePng(width: number, height: number, pixel: (x: number, y: number) => [number, number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // colour type RGBA
  const rows = Array.from({ length: height }, (_, y) => Buffer.concat([Buffer.from([0]), ...Array.from({ length: width }, (_, x) => Buffer.from(pixel(x, y)))]));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.concat(rows))), chunk("IEND", Buffer.alloc(0))]);
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** Builds web/dist if it is missing or older than its sources, so the test exercises the current app. */
function ensureWebBuilt() {
  const index = path.join(ROOT, "web/dist/index.html");
  const sources = Math.max(newestMtime(path.join(ROOT, "web/src")), statSync(path.join(ROOT, "web/build.mjs")).mtimeMs);
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  const r = spawnSync(process.execPath, ["web/build.mjs"], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`npm run build:web failed:\n${r.stdout}\n${r.stderr}`);
}

/** The application's callback page: records what arrives (to check the Referer too). */
async function startCallbackSite() {
  const hits: { url: string; referer?: string }[] = [];
  const server = http.createServer((req, res) => {
    hits.push({ url: req.url ?? "", referer: req.headers.referer });
    res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>Acme Health</title><h1>Welcome back to Acme Health</h1>");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, hits, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Errors the page reports (script errors, CSP violations, failed loads), collected to assert there are none. */
function watch(page: Page) {
  const problems: string[] = [];
  const urls: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("request", (r) => urls.push(r.url()));
  return { problems, urls };
}

async function shot(page: Page, name: string) {
  await mkdir(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file, fullPage: true });
  // UPDATE_SCREENSHOTS=1 refreshes the README's copies; normal runs leave the tree untouched.
  if (process.env.UPDATE_SCREENSHOTS) {
    await mkdir(path.join(ROOT, "docs/screenshots"), { recursive: true });
    await copyFile(file, path.join(ROOT, "docs/screenshots", name));
  }
}

/** What the page's IndexedDB holds for a postbox: whether it is a key still pending confirmation, its kid, its access token. */
async function storedRecord(page: Page, postboxId: string) {
  return page.evaluate(
    (id) =>
      new Promise<{ pending: boolean; kid: string; accessToken: string | undefined } | null>((resolve, reject) => {
        const req = indexedDB.open("postbox");
        req.onerror = () => reject(req.error);
        req.onsuccess = () => {
          const get = req.result.transaction("postboxes").objectStore("postboxes").get(id);
          get.onsuccess = () => resolve(get.result ? { pending: get.result.pending === true, kid: get.result.publicJwk.kid, accessToken: get.result.accessToken } : null);
          get.onerror = () => reject(get.error);
        };
      }),
    postboxId,
  );
}

/** Routes the page's first acceptPostbox so that its answer is lost: sent to the server (`reaches`) or not, then failed in the page. */
async function loseFirstAccept(page: Page, reaches: boolean): Promise<{ lost: number }> {
  const state = { lost: 0 };
  await page.route("**/graphql", async (route: Route) => {
    if (state.lost > 0 || !/acceptPostbox/.test(route.request().postData() ?? "")) return route.continue();
    state.lost++;
    if (reaches) await route.fetch();
    await route.abort("connectionreset");
  });
  return state;
}

/** Opens the consent page and presses Accept with the first answer lost (see loseFirstAccept); returns the error the page shows. */
async function acceptLosingAnswer(page: Page, consentUrl: string, reaches: boolean): Promise<{ lost: number; said: string | null }> {
  const route = await loseFirstAccept(page, reaches);
  await page.goto(consentUrl);
  await page.getByRole("button", { name: "Accept" }).click();
  const failed = page.getByText(/Could not reach the Postbox server/);
  await failed.waitFor();
  return { lost: route.lost, said: await failed.textContent() };
}

async function fitsPhoneWidth(page: Page): Promise<boolean> {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
}

const CREATE = `mutation($input: CreatePostboxInput) { createPostbox(input: $input) { id consentUrl publicKey { kid } } }`;
const POSTBOX = `query($id: ID!) { postbox(id: $id) { id status publicKey { kid alg jwk } } }`;
/** Pushes a text file that the test encrypts to the postbox's key, as an application that encrypts itself does. */
async function pushText(server: TestServer, token: string, postboxId: string, fileName: string, text: string): Promise<void> {
  const pb = (await server.gql(POSTBOX, { id: postboxId }, { token })).data!.postbox;
  const encryptedData = await encryptForPostbox({ publicJwk: pb.publicKey.jwk, kid: pb.publicKey.kid, keyAlg: pb.publicKey.alg }, new TextEncoder().encode(text));
  const r = await server.gql(PUSH_DATA, { input: { postboxId, fileName, fileDescriptor: { mimeType: "text/plain", accounts: [{ accountId: "patient-0042" }] }, encryptedData } }, { token });
  expect(r.errors).toBeUndefined();
}

const STATUS_SUB = `subscription($postboxId: ID) { postboxStatusChanged(postboxId: $postboxId) { postboxId status } }`;
const PUSH_SUB = `subscription($postboxId: ID) { pushStatusChanged(postboxId: $postboxId) { pushId status } }`;
const DR_SUB = `subscription($postboxId: ID) { dataRequestStatusChanged(postboxId: $postboxId) { dataRequestId status } }`;
const REQUEST_DATA = `mutation($postboxId: ID!, $input: RequestDataInput!) { requestData(postboxId: $postboxId, input: $input) { id status } }`;
const DATA_RESPONSE = `query($requestId: ID!) { dataResponse(requestId: $requestId) { ciphertext descriptor kid } }`;

// ---------------------------------------------------------------------------

describe("serving the web app", () => {
  let t: TestServer;
  beforeAll(async () => {
    ensureWebBuilt();
    t = await startTestServer();
  });
  afterAll(async () => t?.stop());

  const get = async (p: string) => {
    const res = await request(`${t.url}${p}`, { method: "GET" });
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  };

  it.each(["/app", "/app/", "/consent/abc123", "/consent"])("serves the app at %s with strict security headers and no caching", async (p) => {
    const r = await get(p);
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toMatch(/text\/html/);
    const csp = String(r.headers["content-security-policy"]);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    expect(r.headers["referrer-policy"]).toBe("no-referrer");
    expect(r.headers["x-content-type-options"]).toBe("nosniff");
    expect(r.headers["x-frame-options"]).toBe("DENY");
    expect(r.headers["cache-control"]).toBe("no-store");
  });

  it("loads only local assets and has no inline script or style", async () => {
    const html = (await get("/app")).body;
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThanOrEqual(3);
    for (const ref of refs) expect(ref.startsWith("/") || ref.startsWith("#")).toBe(true);
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/<style|style="/);
    for (const ref of refs.filter((r) => r.startsWith("/app/assets/"))) {
      const a = await get(ref);
      expect(a.status).toBe(200);
      expect(a.body).not.toMatch(/https?:\/\/(?!www\.w3\.org)[a-z0-9.-]+\.[a-z]{2,}\/[^\s"')]*\.(js|css|woff2?|ttf)/i);
      if (/-[A-Z0-9]{8}\.(js|css)$/.test(ref)) expect(a.headers["cache-control"]).toContain("immutable");
    }
  });

  it("moves the page's links under PUBLIC_URL's path when the server sits behind a reverse proxy prefix", async () => {
    const proxied = express();
    proxied.use("/", createWebRouter(createLogger("silent"), { PUBLIC_URL: "https://example.org/postbox" }));
    const server = proxied.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    try {
      const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const html = await (await request(`${base}/consent/abc`)).body.text();
      const refs = [...html.matchAll(/(?:src|href)="([^"#]+)"/g)].map((m) => m[1]);
      expect(refs.length).toBeGreaterThanOrEqual(3);
      for (const ref of refs) expect(ref.startsWith("/postbox/app")).toBe(true);
      const root = await request(`${base}/`);
      expect(root.headers.location).toBe("/postbox/app");
    } finally {
      server.close();
    }
  });

  it("uses only GraphQL operations that are valid against schema.graphql", async () => {
    // Catches an API change that would break the app before a browser is even started.
    const schema = buildSchema(await readFile(path.join(ROOT, "schema.graphql"), "utf8"));
    const docs: string[] = [];
    for (const f of readdirSync(path.join(ROOT, "web/src")).filter((f) => f.endsWith(".ts"))) {
      const src = await readFile(path.join(ROOT, "web/src", f), "utf8");
      for (const m of src.matchAll(/\/\* GraphQL \*\/ `([^`]*)`/g)) docs.push(m[1]);
    }
    expect(docs.length).toBeGreaterThanOrEqual(12);
    for (const d of docs) expect(validate(schema, parse(d)).map((e) => e.message)).toEqual([]);
  });

  it("answers 404 for an unknown asset, and redirects / to the inbox", async () => {
    expect((await get("/app/assets/nope.js")).status).toBe(404);
    const root = await get("/");
    expect(root.status).toBe(302);
    expect(root.headers.location).toBe("/app");
  });
});

let browser: Browser | undefined;

if (!HAVE_CHROMIUM && process.env.CI) {
  describe("the user's app in Chromium", () => {
    it("needs Chromium", () => {
      throw new Error(`Chromium is missing at ${CHROMIUM}. Install it (apt-get install -y chromium) or set CHROMIUM_PATH; in CI this test must run.`);
    });
  });
} else if (!HAVE_CHROMIUM) {
  console.warn(`\n\n******** BROWSER TEST SKIPPED: no Chromium at ${CHROMIUM}. Install it with: apt-get install -y chromium ********\n\n`);
  describe.skip("the user's app in Chromium", () => it("", () => {}));
} else {
  describe("the user's app in Chromium", () => {
    let t: TestServer;
    let app: TestApp;
    let readContract: TestApp;
    let session: string;
    let site: Awaited<ReturnType<typeof startCallbackSite>>;
    let context: BrowserContext;
    let page: Page;
    let watched: ReturnType<typeof watch>;
    let postboxId: string;
    let consentUrl: string;
    let backupFile: string;
    let tmp: string;
    const text = "Hello from Acme Health, Zoë.\nYour results are ready: all values are within range.";
    // A small bar chart: three bars on a light background.
    const png = makePng(160, 90, (x, y) => {
      const bar = Math.floor(x / 40);
      const top = [50, 20, 35, 90][bar];
      return x % 40 >= 8 && bar < 3 && y >= top ? [31, 78, 121, 255] : [240, 244, 248, 255];
    });

    beforeAll(async () => {
      ensureWebBuilt();
      tmp = await mkdtemp(path.join(os.tmpdir(), "postbox-browser-"));
      site = await startCallbackSite();
      t = await startTestServer();
      app = await registerApp(t, { name: "Acme Health", callbackUrls: [`${site.url}/postbox/done`], postboxMode: "ONGOING" });
      readContract = await addContract(t, app.appId, { kind: "READ", alg: "PS512" });
      session = await createSession(t, app);
      // launch() gives every browser a fresh temporary profile (user-data-dir).
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
      });
      context = await browser.newContext({ viewport: PHONE, acceptDownloads: true, locale: "en-GB", timezoneId: "UTC" });
      page = await context.newPage();
      watched = watch(page);
    }, 60_000);

    afterAll(async () => {
      await browser?.close();
      await t?.stop();
      await site?.close();
      if (tmp) await rm(tmp, { recursive: true, force: true });
    });

    it("shows the consent page, accepts with a key made in the browser, and returns to the application", async () => {
      const created = await t.gql(CREATE, { input: { callbackUrl: `${site.url}/postbox/done`, reference: "patient-0042" } }, { token: session });
      expect(created.errors).toBeUndefined();
      postboxId = created.data!.createPostbox.id;
      consentUrl = created.data!.createPostbox.consentUrl;
      const code = consentUrl.split("/").pop()!;

      const subscriber = wsClient(t.wsUrl, `Bearer ${session}`);
      const statuses = collect(subscriber, STATUS_SUB, { postboxId });
      expect((await statuses.next(1)).postboxStatusChanged.status).toBe("PENDING");

      const response = await page.goto(consentUrl);
      expect(response!.headers()["content-security-policy"]).toContain("default-src 'self'");
      await page.getByRole("heading", { name: "Acme Health wants to send you files" }).waitFor();
      // The single-use code left the address bar as soon as the page read it.
      expect(new URL(page.url()).pathname).toBe("/consent");
      expect(page.url()).not.toContain(code);
      await expect(page.locator("#mode").textContent()).resolves.toMatch(/Ongoing/);
      await expect(page.locator("#postbox-expires").textContent()).resolves.toMatch(/\d{4}/);
      await expect(page.locator("#consent-expires").textContent()).resolves.toMatch(/in \d+ minutes/);
      await expect(page.getByText("patient-0042").count()).resolves.toBe(1);
      expect(await fitsPhoneWidth(page)).toBe(true);
      await shot(page, "consent.png");

      // Keyboard: the Accept button takes focus and Enter activates it.
      await page.getByRole("button", { name: "Accept" }).focus();
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Postbox accepted" }).waitFor();
      expect((await statuses.next(2)).postboxStatusChanged.status).toBe("READY");

      // The public key the server holds is the one the browser made.
      const pb = (await t.gql(POSTBOX, { id: postboxId }, { token: session })).data!.postbox;
      // X25519: this Chromium's Web Crypto has it (the server's key agreement per file is cheapest with it).
      expect(pb).toMatchObject({ status: "READY", publicKey: { alg: "ECDH-ES+A256KW", jwk: { kty: "OKP", crv: "X25519" } } });
      expect(pb.publicKey.jwk).not.toHaveProperty("d");

      // The key backup: a JSON file with the private key, labelled as secret.
      const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download key backup" }).click()]);
      expect(download.suggestedFilename()).toBe(`postbox-key-backup-${postboxId}-SECRET.json`);
      backupFile = path.join(tmp, download.suggestedFilename());
      await download.saveAs(backupFile);
      const backup = JSON.parse(await readFile(backupFile, "utf8"));
      expect(backup).toMatchObject({ format: "postbox-key-backup", version: 1, postboxId, server: t.url, publicKey: { kid: pb.publicKey.kid } });
      expect(backup.warning).toMatch(/^SECRET/);
      expect(backup.privateKey.d).toEqual(expect.any(String));
      expect(backup.credential.accessToken).toMatch(/^pbu_/);

      // On this device the private key is stored non-extractable.
      const stored = await page.evaluate(
        (id) =>
          new Promise<{ extractable: boolean; type: string; alg: string; usages: string[] }>((resolve, reject) => {
            const req = indexedDB.open("postbox");
            req.onerror = () => reject(req.error);
            req.onsuccess = () => {
              const get = req.result.transaction("postboxes").objectStore("postboxes").get(id);
              get.onsuccess = () => {
                const k = get.result.privateKey as CryptoKey;
                resolve({ extractable: k.extractable, type: k.type, alg: k.algorithm.name, usages: k.usages });
              };
              get.onerror = () => reject(get.error);
            };
          }),
        postboxId,
      );
      expect(stored).toEqual({ extractable: false, type: "private", alg: "X25519", usages: ["deriveBits"] });

      // Continue: to the callback URL, without a Referer.
      await page.getByRole("button", { name: "Continue to Acme Health" }).click();
      await page.waitForURL(`${site.url}/postbox/done**`);
      const landed = new URL(page.url());
      expect(landed.searchParams.get("postboxId")).toBe(postboxId);
      expect(landed.searchParams.get("result")).toBe("ACCEPTED");
      // (The site's own favicon request carries its page as Referer; only the arrival matters.)
      const arrival = site.hits.filter((h) => h.url.startsWith("/postbox/done"));
      expect(arrival).toHaveLength(1);
      expect(arrival[0].referer).toBeUndefined();

      statuses.dispose();
      await subscriber.dispose();
    }, 90_000);

    it("decrypts pushed text and images in the inbox, and acknowledging makes them DELIVERED", async () => {
      const pb = (await t.gql(POSTBOX, { id: postboxId }, { token: session })).data!.postbox;
      const subscriber = wsClient(t.wsUrl, `Bearer ${session}`);
      const pushEvents = collect(subscriber, PUSH_SUB, { postboxId });
      while (t.app.services.pushes.openSubscriptions < 1) await new Promise((r) => setTimeout(r, 10));

      // The text file encrypted by the app itself; the PNG sent as data for the server to encrypt.
      const target = { publicJwk: pb.publicKey.jwk, kid: pb.publicKey.kid, keyAlg: pb.publicKey.alg };
      const encryptedData = await encryptForPostbox(target, new TextEncoder().encode(text));
      const descriptor = { accounts: [{ accountId: "patient-0042" }], tags: ["results"] };
      const pushed = [];
      for (const input of [
        { postboxId, fileName: "results.txt", fileDescriptor: { ...descriptor, mimeType: "text/plain; charset=utf-8" }, encryptedData },
        { postboxId, fileName: "chart.png", fileDescriptor: { ...descriptor, mimeType: "image/png" }, data: png.toString("base64") },
      ]) {
        const r = await t.gql(PUSH_DATA, { input }, { token: session });
        expect(r.errors).toBeUndefined();
        pushed.push(r.data!.pushData.id);
      }

      await page.goto(`${t.url}/app`);
      const textItem = page.locator(".file", { hasText: "results.txt" });
      await textItem.locator("pre.content").waitFor();
      expect(await textItem.locator("pre.content").textContent()).toBe(text);
      const imgItem = page.locator(".file", { hasText: "chart.png" });
      const img = imgItem.locator("img.preview");
      await img.waitFor();
      await page.waitForFunction(() => Array.from(document.querySelectorAll<HTMLImageElement>("img.preview")).every((i) => i.complete));
      expect(await img.evaluate((i: HTMLImageElement) => [i.naturalWidth, i.naturalHeight])).toEqual([160, 90]);
      expect(await fitsPhoneWidth(page)).toBe(true);
      await shot(page, "inbox.png");

      await page.getByRole("button", { name: /Confirm receipt \(2 new files\)/ }).click();
      await page.getByText("Receipt confirmed for 2 files.").waitFor();
      const delivered = [(await pushEvents.next(1)).pushStatusChanged, (await pushEvents.next(2)).pushStatusChanged];
      expect(delivered.map((e) => e.status)).toEqual(["DELIVERED", "DELIVERED"]);
      expect(delivered.map((e) => e.pushId).sort()).toEqual([...pushed].sort());
      pushEvents.dispose();
      await subscriber.dispose();
    }, 60_000);

    it("shows a file the application pushes while the inbox is open, without a reload", async () => {
      // Leave the inbox until its live subscription is gone, then open it again and wait for the new one:
      // the push below must happen while the page is listening.
      await page.goto("about:blank");
      while (t.app.services.files.openSubscriptions > 0) await new Promise((r) => setTimeout(r, 10));
      // The file list's loads: the stream's opening events (files already shown) must not reload it.
      let listLoads = 0;
      const countLoads = (r: Request) => void (/query Files\b/.test(r.postData() ?? "") && listLoads++);
      page.on("request", countLoads);
      await page.goto(`${t.url}/app`);
      await page.locator(".file", { hasText: "results.txt" }).waitFor();
      while (t.app.services.files.openSubscriptions < 1) await new Promise((r) => setTimeout(r, 10));
      // The page judges the stream's opening events 200 ms after they arrive: a reload they caused would start by now
      // (and a push sooner would be judged with them).
      await new Promise((r) => setTimeout(r, 600));
      // Counts files put on screen still "Decrypting…" from here on: a reload must not take the files shown back to that.
      await page.evaluate(() => {
        const w = window as unknown as { undecryptedShown: number };
        w.undecryptedShown = 0;
        new MutationObserver((changes) => {
          for (const c of changes) for (const n of Array.from(c.addedNodes)) if (n instanceof HTMLElement && n.closest("ul.files") && n.textContent?.includes("Decrypting…")) w.undecryptedShown++;
        }).observe(document.body, { childList: true, subtree: true });
      });

      const live = "Pushed while you were looking.";
      let downloads = 0;
      const countDownloads = (r: Request) => void (new URL(r.url()).pathname.startsWith("/files/") && downloads++);
      page.on("request", countDownloads);
      await pushText(t, session, postboxId, "live.txt", live);

      const item = page.locator(".file", { hasText: "live.txt" });
      await item.locator("pre.content").waitFor({ timeout: 10_000 });
      expect(await item.locator("pre.content").textContent()).toBe(live);
      await page.getByRole("button", { name: /Confirm receipt \(1 new file\)/ }).waitFor();
      expect(await page.locator(".file", { hasText: "results.txt" }).count()).toBe(1);
      expect(await page.evaluate(() => (window as unknown as { undecryptedShown: number }).undecryptedShown)).toBe(0);
      page.off("request", countLoads);
      page.off("request", countDownloads);
      expect(listLoads).toBe(2); // on opening, and for live.txt
      // The reload downloaded and decrypted only the new file: those shown already come from the page's memory.
      expect(downloads).toBe(1);
    }, 60_000);

    it("keeps an acknowledgement made while the list reloads: the confirmation stays and the reload read before it is dropped", async () => {
      // The inbox shows live.txt pending (previous test). A push makes the list reload; its file query is held
      // until live.txt is acknowledged, so the reload's answer says live.txt is still pending.
      const held: Route[] = [];
      const hold = (route: Route) => (held.length === 0 && /query Files\b/.test(route.request().postData() ?? "") ? held.push(route) : route.continue());
      await page.route("**/graphql", hold);
      try {
        await pushText(t, session, postboxId, "live-2.txt", "Second live file.");
        while (held.length === 0) await new Promise((r) => setTimeout(r, 10));

        await page.getByRole("button", { name: /Confirm receipt \(1 new file\)/ }).click();
        await page.getByText("Receipt confirmed for 1 file.").waitFor();
        await held[0].continue();

        // The list after the acknowledgement: live-2.txt new and pending, live.txt delivered, and the confirmation still there.
        await page.locator(".file", { hasText: "live-2.txt" }).locator("pre.content").waitFor({ timeout: 10_000 });
        await page.getByRole("button", { name: /Confirm receipt \(1 new file\)/ }).waitFor();
        expect(await page.locator(".file", { hasText: "live.txt" }).first().locator(".badge").textContent()).toBe("DELIVERED");
        expect(await page.getByText("Receipt confirmed for 1 file.").isVisible()).toBe(true);
        expect(await page.locator(".file .badge", { hasText: "PENDING" }).count()).toBe(1);
      } finally {
        await page.unroute("**/graphql", hold);
      }
    }, 60_000);

    it("answers the application's request for data with a file the app decrypts with its READ key", async () => {
      const subscriber = wsClient(t.wsUrl, `Bearer ${session}`);
      const events = collect(subscriber, DR_SUB, { postboxId });
      while (t.app.services.dataRequests.openSubscriptions < 1) await new Promise((r) => setTimeout(r, 10));
      const asked = await t.gql(
        REQUEST_DATA,
        { postboxId, input: { title: "A photo of your insurance card", description: "So we can bill your insurer directly.", acceptedMimeTypes: ["image/*", "application/pdf"] } },
        { token: session },
      );
      expect(asked.errors).toBeUndefined();
      const requestId = asked.data!.requestData.id;
      expect((await events.next(1)).dataRequestStatusChanged.status).toBe("PENDING");

      await page.getByRole("button", { name: "Refresh" }).click();
      const card = page.locator(`[data-request-id="${requestId}"]`);
      await card.getByRole("heading", { name: "Acme Health asks: A photo of your insurance card" }).waitFor();
      await shot(page, "data-request.png");
      const shared = makePng(32, 20, (x, y) => (x + y) % 2 ? [200, 30, 30, 255] : [255, 255, 255, 255]);
      await card.getByLabel("File to share").setInputFiles({ name: "insurance-card.png", mimeType: "image/png", buffer: shared });
      await card.getByRole("button", { name: "Encrypt and share" }).click();
      await page.getByText("Shared “insurance-card.png” with Acme Health").waitFor();
      expect((await events.next(2)).dataRequestStatusChanged).toEqual({ dataRequestId: requestId, status: "FULFILLED" });

      const got = await t.gql(DATA_RESPONSE, { requestId }, { token: session });
      expect(got.errors).toBeUndefined();
      // The application's READ private key, as it would load it from its PEM file.
      const pem = createPrivateKey({ key: (await exportJWK(readContract.privateKey)) as never, format: "jwk" }).export({ type: "pkcs8", format: "pem" });
      const priv = createPrivateKey(pem);
      const bytes = Buffer.from((await compactDecrypt(got.data!.dataResponse.ciphertext, priv)).plaintext);
      expect(bytes.equals(shared)).toBe(true);
      expect(JSON.parse(Buffer.from((await compactDecrypt(got.data!.dataResponse.descriptor, priv)).plaintext).toString())).toEqual({ fileName: "insurance-card.png", mimeType: "image/png", size: shared.length });
      events.dispose();
      await subscriber.dispose();
    }, 60_000);

    it("kept tokens and the consent code out of every URL, and the page reported no errors (CSP included)", () => {
      const code = consentUrl.split("/").pop()!;
      const withCode = watched.urls.filter((u) => u.includes(code));
      expect(withCode).toEqual([consentUrl]);
      expect(watched.urls.filter((u) => /pb[usr]_/.test(u))).toEqual([]);
      expect(watched.problems).toEqual([]);
    });

    it("restores the postbox from the key backup in another browser context, re-establishing its stale credential with the key", async () => {
      // The backup's tokens are stale: its refresh token was exchanged since, and using it
      // again (as a thief with a copy would) revoked the credential.
      // The first device leaves its inbox first: its live stream would also see the credential
      // revoked below and re-establish it with its own key, a second reissue this test does not count.
      await page.goto("about:blank");
      while (t.app.services.files.openSubscriptions > 0) await new Promise((r) => setTimeout(r, 10));
      const stale = JSON.parse(await readFile(backupFile, "utf8"));
      const REFRESH = `mutation($r: String!) { refreshUserToken(refreshToken: $r) { accessToken } }`;
      expect((await t.gql(REFRESH, { r: stale.credential.refreshToken })).errors).toBeUndefined();
      const reused = await t.gql(REFRESH, { r: stale.credential.refreshToken });
      expect(reused.errors![0].extensions?.reissue).toBe(true);
      const reissuedBefore = await t.app.db.prisma.auditEvent.count({ where: { action: "user.reissue", outcome: "SUCCESS", postboxId } });

      const other = await browser!.newContext({ viewport: PHONE });
      const p2 = await other.newPage();
      const w2 = watch(p2);
      await p2.goto(`${t.url}/app`);
      await p2.getByText("No postboxes on this device yet").waitFor();
      await p2.getByLabel("Key backup file").setInputFiles(backupFile);
      await p2.getByText("Restored the postbox from Acme Health").waitFor();
      const textItem = p2.locator(".file", { hasText: "results.txt" });
      await textItem.locator("pre.content").waitFor();
      expect(await textItem.locator("pre.content").textContent()).toBe(text);
      expect(await t.app.db.prisma.auditEvent.count({ where: { action: "user.reissue", outcome: "SUCCESS", postboxId } })).toBe(reissuedBefore + 1);
      // A file that is not a backup is refused with a message.
      await p2.getByLabel("Key backup file").setInputFiles({ name: "notes.json", mimeType: "application/json", buffer: Buffer.from('{"hello":1}') });
      await p2.getByText("That file is not a Postbox key backup.").waitFor();
      expect(w2.problems).toEqual([]);
      await other.close();

      // In a browser without X25519 the backup's key is refused with a way out.
      const old = await browserWithoutX25519();
      const p3 = await old.newPage();
      await p3.goto(`${t.url}/app`);
      await p3.getByLabel("Key backup file").setInputFiles(backupFile);
      await p3.getByText(/cannot be used: this browser cannot use X25519 keys\. Open this page in a current browser/).waitFor();
      await old.close();
    }, 60_000);

    it("shows clear states for a used, unknown or expired link and for a network failure", async () => {
      const other = await browser!.newContext({ viewport: PHONE });
      const p2 = await other.newPage();
      await p2.goto(consentUrl);
      await p2.getByRole("heading", { name: "This link was already used" }).waitFor();

      await p2.goto(`${t.url}/consent/${randomBytes(24).toString("base64url")}`);
      await p2.getByRole("heading", { name: "This link is not valid" }).waitFor();

      const created = await t.gql(CREATE, { input: {} }, { token: session });
      await t.app.db.prisma.postbox.update({ where: { id: created.data!.createPostbox.id }, data: { consentExpiresAt: new Date(Date.now() - 60_000) } });
      await p2.goto(created.data!.createPostbox.consentUrl);
      await p2.getByRole("heading", { name: "This link has expired" }).waitFor();

      const fresh = await t.gql(CREATE, { input: {} }, { token: session });
      await p2.route("**/graphql", (route) => route.abort("internetdisconnected"));
      await p2.goto(fresh.data!.createPostbox.consentUrl);
      await p2.getByRole("heading", { name: "Cannot reach Postbox" }).waitFor();
      await p2.unroute("**/graphql");
      await p2.getByRole("button", { name: "Try again" }).click();
      await p2.getByRole("heading", { name: "Acme Health wants to send you files" }).waitFor();
      await p2.getByRole("button", { name: "Decline" }).click();
      await p2.getByRole("heading", { name: "Declined" }).waitFor();
      expect((await t.gql(POSTBOX, { id: fresh.data!.createPostbox.id }, { token: session })).data!.postbox.status).toBe("DECLINED");
      await other.close();
    }, 60_000);

    it("keeps the inbox live across access-token expiry: the page renews its token and subscribes again", async () => {
      // A server whose access tokens live 2 s: the server ends the page's live stream every
      // 2 s, and each time the page must renew its token and open a new socket.
      const short = await startTestServer({ env: { USER_ACCESS_TTL: "2s" } });
      const other = await browser!.newContext({ viewport: PHONE });
      try {
        const shortSession = await createSession(short, await registerApp(short, { name: "Acme Health" }));
        const created = await short.gql(CREATE, { input: {} }, { token: shortSession });
        const id = created.data!.createPostbox.id;
        const p2 = await other.newPage();
        const w2 = watch(p2);
        await p2.goto(created.data!.createPostbox.consentUrl);
        await p2.getByRole("button", { name: "Accept" }).click();
        await p2.getByRole("heading", { name: "Postbox accepted" }).waitFor();
        await p2.goto(`${short.url}/app`);
        await p2.getByText("No files yet.").waitFor();

        const refreshes = () => short.app.db.prisma.auditEvent.count({ where: { action: "user.token_refresh", outcome: "SUCCESS", postboxId: id } });
        const start = await refreshes();
        // Two expiries of the stream, each answered by a renewal.
        const deadline = Date.now() + 20_000;
        while ((await refreshes()) < start + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        expect(await refreshes()).toBeGreaterThanOrEqual(start + 2);
        while (short.app.services.files.openSubscriptions < 1) await new Promise((r) => setTimeout(r, 10));

        await pushText(short, shortSession, id, "later.txt", "after renewals");
        await p2.locator(".file", { hasText: "later.txt" }).locator("pre.content").waitFor({ timeout: 10_000 });
        expect(w2.problems).toEqual([]);
      } finally {
        await other.close();
        await short.stop();
      }
    }, 90_000);

    /** A context whose Web Crypto refuses X25519, as browsers before 2024–2025 do (key generation and import alike). */
    async function browserWithoutX25519(): Promise<BrowserContext> {
      const context = await browser!.newContext({ viewport: PHONE });
      await context.addInitScript(() => {
        const subtle = crypto.subtle as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
        for (const [method, algArg] of [["generateKey", 0], ["importKey", 2]] as const) {
          const original = subtle[method].bind(crypto.subtle);
          subtle[method] = (...a) => ((a[algArg] as { name?: string })?.name === "X25519" ? Promise.reject(new DOMException("Unrecognized name.", "NotSupportedError")) : original(...a));
        }
      });
      return context;
    }

    it("makes a P-256 key where the browser's Web Crypto has no X25519, and reads files with it", async () => {
      const other = await browserWithoutX25519();
      try {
        const created = await t.gql(CREATE, { input: {} }, { token: session });
        const id = created.data!.createPostbox.id;
        const p2 = await other.newPage();
        await p2.goto(created.data!.createPostbox.consentUrl);
        await p2.getByRole("button", { name: "Accept" }).click();
        await p2.getByRole("heading", { name: "Postbox accepted" }).waitFor();
        const pb = (await t.gql(POSTBOX, { id }, { token: session })).data!.postbox;
        expect(pb.publicKey.jwk).toMatchObject({ kty: "EC", crv: "P-256" });
        await pushText(t, session, id, "p256.txt", "read with P-256");
        await p2.goto(`${t.url}/app`);
        const item = p2.locator(".file", { hasText: "p256.txt" });
        await item.locator("pre.content").waitFor({ timeout: 10_000 });
        expect(await item.locator("pre.content").textContent()).toBe("read with P-256");
      } finally {
        await other.close();
      }
    }, 60_000);

    it("finishes an acceptance whose answer was lost: Accept again offers the same key, proves it, and the page reads the postbox", async () => {
      const other = await browser!.newContext({ viewport: PHONE, acceptDownloads: true });
      try {
        const created = await t.gql(CREATE, { input: {} }, { token: session });
        const id = created.data!.createPostbox.id;
        const p2 = await other.newPage();
        const w2 = watch(p2);
        // The first acceptPostbox reaches the server, which takes the key; its answer never reaches the page.
        const { lost, said } = await acceptLosingAnswer(p2, created.data!.createPostbox.consentUrl, true);
        expect(lost).toBe(1);
        expect(await storedRecord(p2, id)).toMatchObject({ pending: true });
        const taken = (await t.gql(POSTBOX, { id }, { token: session })).data!.postbox;
        expect(taken.status).toBe("READY");

        await p2.getByRole("button", { name: "Accept" }).click();
        await p2.getByRole("heading", { name: "Postbox accepted" }).waitFor();
        // The page had not claimed that nothing was accepted.
        expect(said).toMatch(/may or may not have reached the server\. Press Accept again/);
        // The credential came from proving the key (the lost answer's credential is not known to the page).
        expect(await t.app.db.prisma.auditEvent.count({ where: { action: "user.reissue", outcome: "SUCCESS", postboxId: id } })).toBe(1);
        // Same page, same key: the backup is still offered, and it holds the key the server took.
        const [download] = await Promise.all([p2.waitForEvent("download"), p2.getByRole("button", { name: "Download key backup" }).click()]);
        const backup = JSON.parse(await readFile((await download.path())!, "utf8"));
        expect(backup).toMatchObject({ postboxId: id, publicKey: { kid: taken.publicKey.kid } });
        expect(await storedRecord(p2, id)).toEqual({ pending: false, kid: taken.publicKey.kid, accessToken: expect.stringMatching(/^pbu_/) });

        await pushText(t, session, id, "after-lost-answer.txt", "read after a lost answer");
        await p2.goto(`${t.url}/app`);
        const item = p2.locator(".file", { hasText: "after-lost-answer.txt" });
        await item.locator("pre.content").waitFor({ timeout: 10_000 });
        expect(await item.locator("pre.content").textContent()).toBe("read after a lost answer");
        // The aborted request is the only thing the console reports.
        expect(w2.problems.filter((m) => !m.includes("net::ERR_CONNECTION_RESET"))).toEqual([]);
      } finally {
        await other.close();
      }
    }, 60_000);

    it("after a lost answer and a reload, the consent page finishes the acceptance with the saved key, saying no backup is possible", async () => {
      const other = await browser!.newContext({ viewport: PHONE });
      try {
        const created = await t.gql(CREATE, { input: { callbackUrl: `${site.url}/postbox/done` } }, { token: session });
        const id = created.data!.createPostbox.id;
        const p2 = await other.newPage();
        await acceptLosingAnswer(p2, created.data!.createPostbox.consentUrl, true);
        await p2.unrouteAll();

        await p2.reload(); // the code stayed in this tab's sessionStorage
        await p2.getByRole("heading", { name: "Postbox accepted" }).waitFor();
        await p2.getByText("No key backup can be downloaded").waitFor();
        await p2.getByText("Go back to Acme Health yourself").waitFor();
        expect(await p2.getByRole("button", { name: "Download key backup" }).count()).toBe(0);
        const pb = (await t.gql(POSTBOX, { id }, { token: session })).data!.postbox;
        expect(await storedRecord(p2, id)).toEqual({ pending: false, kid: pb.publicKey.kid, accessToken: expect.stringMatching(/^pbu_/) });
      } finally {
        await other.close();
      }
    }, 60_000);

    it("after a lost answer and the consent page left, the inbox finishes the acceptance with the saved key", async () => {
      const other = await browser!.newContext({ viewport: PHONE });
      try {
        const created = await t.gql(CREATE, { input: {} }, { token: session });
        const id = created.data!.createPostbox.id;
        const p2 = await other.newPage();
        await acceptLosingAnswer(p2, created.data!.createPostbox.consentUrl, true);
        await p2.unrouteAll();

        await p2.goto(`${t.url}/app`);
        await pushText(t, session, id, "settled.txt", "read after the inbox settled the key");
        const item = p2.locator(".file", { hasText: "settled.txt" });
        await item.locator("pre.content").waitFor({ timeout: 10_000 });
        expect(await item.locator("pre.content").textContent()).toBe("read after the inbox settled the key");
        expect(await storedRecord(p2, id)).toMatchObject({ pending: false, kid: (await t.gql(POSTBOX, { id }, { token: session })).data!.postbox.publicKey.kid });
      } finally {
        await other.close();
      }
    }, 60_000);

    it("says plainly when the postbox was accepted meanwhile with another key, and drops the key it saved", async () => {
      const first = await browser!.newContext({ viewport: PHONE });
      const second = await browser!.newContext({ viewport: PHONE });
      try {
        const created = await t.gql(CREATE, { input: {} }, { token: session });
        const id = created.data!.createPostbox.id;
        const consent = created.data!.createPostbox.consentUrl;
        // This device's accept never reaches the server; another browser accepts the postbox.
        const p1 = await first.newPage();
        await acceptLosingAnswer(p1, consent, false);
        expect(await storedRecord(p1, id)).toMatchObject({ pending: true });
        const p2 = await second.newPage();
        await p2.goto(consent);
        await p2.getByRole("button", { name: "Accept" }).click();
        await p2.getByRole("heading", { name: "Postbox accepted" }).waitFor();

        await p1.getByRole("button", { name: "Accept" }).click();
        await p1.getByRole("heading", { name: "This link was already used" }).waitFor();
        await p1.getByText("was accepted with a different key than the one this device made").waitFor();
        // Removed in the background as the message shows.
        const deadline = Date.now() + 5_000;
        while ((await storedRecord(p1, id)) !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        expect(await storedRecord(p1, id)).toBeNull();
      } finally {
        await first.close();
        await second.close();
      }
    }, 60_000);

    it("catches up after the network drops: a file pushed while the inbox was cut off appears once it is back", async () => {
      // The page reaches the server only through a relay that can cut the network (the
      // server stays up). Its origin is the relay's, so the postbox is accepted there too.
      const link = await relay(Number(new URL(t.url).port));
      const other = await browser!.newContext({ viewport: PHONE });
      try {
        const created = await t.gql(CREATE, { input: {} }, { token: session });
        const id = created.data!.createPostbox.id;
        const p2 = await other.newPage();
        await p2.goto(link.url + new URL(created.data!.createPostbox.consentUrl).pathname);
        await p2.getByRole("button", { name: "Accept" }).click();
        await p2.getByRole("heading", { name: "Postbox accepted" }).waitFor();
        const streams = t.app.services.files.openSubscriptions;
        const opened = jest.spyOn(t.app.services.files, "subscribeFiles");
        await p2.goto(`${link.url}/app`);
        await p2.getByText("No files yet.").waitFor();
        while (t.app.services.files.openSubscriptions <= streams) await new Promise((r) => setTimeout(r, 10));
        const pushTo = (fileName: string, text: string) => pushText(t, session, id, fileName, text);
        // One file the live stream brings, so the page has seen a change before the drop.
        await pushTo("before.txt", "sent while online");
        await p2.locator(".file", { hasText: "before.txt" }).locator("pre.content").waitFor({ timeout: 15_000 });
        const beforeAt = (await t.app.db.prisma.push.findFirstOrThrow({ where: { postboxId: id } })).receivedAt;

        link.down();
        while (t.app.services.files.openSubscriptions > streams) await new Promise((r) => setTimeout(r, 10));
        // No stream can hear of this push: only the catch-up on reconnecting can show it.
        await pushTo("offline.txt", "sent while offline");
        await new Promise((r) => setTimeout(r, 1500)); // at least one failed reconnect attempt
        expect(await p2.locator(".file", { hasText: "offline.txt" }).count()).toBe(0);
        link.up();

        const item = p2.locator(".file", { hasText: "offline.txt" });
        await item.locator("pre.content").waitFor({ timeout: 15_000 });
        expect(await item.locator("pre.content").textContent()).toBe("sent while offline");
        // The reconnect asked only for what changed since the last change the page had seen.
        const opts = opened.mock.calls.map((c) => c[2]);
        expect(opts[0]).toEqual({ includeCurrent: true, changedSince: null });
        expect(opts.at(-1)).toEqual({ includeCurrent: true, changedSince: expect.any(Date) });
        expect(opts.at(-1)!.changedSince!.getTime()).toBeGreaterThanOrEqual(beforeAt.getTime());
        opened.mockRestore();
      } finally {
        await other.close();
        await link.close();
      }
    }, 60_000);

    it("keeps the older files the user opened on screen when a new file makes the list reload", async () => {
      // Last, as it leaves the older files (results.txt) behind "Show older files" for a fresh page.
      for (let i = 1; i <= 20; i++) await pushText(t, session, postboxId, `batch-${i}.txt`, `File ${i} of a batch.`);
      await page.goto("about:blank");
      while (t.app.services.files.openSubscriptions > 0) await new Promise((r) => setTimeout(r, 10));
      await page.goto(`${t.url}/app`);
      await page.locator(".file", { hasText: "batch-20.txt" }).locator("pre.content").waitFor({ timeout: 20_000 });
      while (t.app.services.files.openSubscriptions < 1) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 600)); // the stream's opening events judged (they cause no reload)
      const files = page.locator("ul.files > li");
      expect(await files.count()).toBe(20);
      await page.getByRole("button", { name: "Show older files" }).click();
      await page.locator(".file", { hasText: "results.txt" }).locator("pre.content").waitFor({ timeout: 10_000 });
      const opened = await files.count();
      expect(opened).toBeGreaterThan(20);

      await pushText(t, session, postboxId, "newest.txt", "The newest file.");
      await page.locator(".file", { hasText: "newest.txt" }).locator("pre.content").waitFor({ timeout: 10_000 });
      // As many files as before, the newest first; the oldest one moved behind "Show older files".
      expect(await files.count()).toBe(opened);
      expect(await files.first().textContent()).toContain("newest.txt");
      await page.getByRole("button", { name: "Show older files" }).waitFor();
    }, 90_000);
  });
}
