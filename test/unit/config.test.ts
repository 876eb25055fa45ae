// Configuration: every parser, defaults, and that a bad value names its variable,
// both from loadConfig() and from the real entry point (spawned src/main.ts).
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "@jest/globals";
import { ConfigError, loadConfig, parseBytes, parseDuration, SPEC } from "../../src/infra/config.js";

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["15s", 15_000],
    ["30m", 1_800_000],
    ["2h", 7_200_000],
    ["7d", 604_800_000],
    ["1.5h", 5_400_000],
    ["45", 45_000],
    [" 10m ", 600_000],
  ])("parses %j", (raw, ms) => {
    expect(parseDuration(raw)).toBe(ms);
  });

  it.each(["", "abc", "10x", "-5m", "0", "0s", "m"])("refuses %j, naming the variable", (raw) => {
    const e = configError(() => parseDuration(raw, "SESSION_TTL"));
    expect(e.variable).toBe("SESSION_TTL");
    expect(e.message).toContain("SESSION_TTL");
  });
});

describe("parseBytes", () => {
  it.each([
    ["1000000", 1_000_000],
    ["1kb", 1000],
    ["512KiB", 524_288],
    ["10MiB", 10_485_760],
    ["1mb", 1_000_000],
    ["1GiB", 1_073_741_824],
    ["2 MiB", 2_097_152],
  ])("parses %j", (raw, n) => {
    expect(parseBytes(raw)).toBe(n);
  });

  it.each(["", "ten", "10 potatoes", "0", "-1MiB", "1.5.2MiB"])("refuses %j, naming the variable", (raw) => {
    const e = configError(() => parseBytes(raw, "MAX_PUSH_BYTES"));
    expect(e.variable).toBe("MAX_PUSH_BYTES");
  });
});

describe("loadConfig", () => {
  it("has working defaults for everything", () => {
    const c = loadConfig({});
    expect(c.NODE_ENV).toBe("development");
    expect(c.HOST).toBe("0.0.0.0");
    expect(c.PORT).toBe(4000);
    expect(c.PUBLIC_URL).toBe("http://localhost:4000");
    expect(c.DATA_DIR).toBe(path.resolve("./data"));
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.REDIS_URL).toBeUndefined();
    expect(c.ADMIN_TOKEN).toBeUndefined();
    expect(c.LOG_LEVEL).toBe("info");
    expect(c.INTROSPECTION).toBe(true);
    expect(c.TRUST_PROXY).toBe(false);
    expect(c.SESSION_TTL).toBe(30 * 60_000);
    expect(c.ASSERTION_MAX_SKEW).toBe(5 * 60_000);
    expect(c.MAX_PUSH_BYTES).toBe(10 * 1024 * 1024);
  });

  it("reads SESSION_RECHECK as a duration, 0 turning it off, and names it when it is wrong", () => {
    expect(loadConfig({}).SESSION_RECHECK).toBe(5000);
    expect(loadConfig({ SESSION_RECHECK: "0" }).SESSION_RECHECK).toBe(0);
    expect(loadConfig({ SESSION_RECHECK: "0s" }).SESSION_RECHECK).toBe(0);
    expect(loadConfig({ SESSION_RECHECK: "250ms" }).SESSION_RECHECK).toBe(250);
    for (const raw of ["-1s", "soon", "5 minutes"]) {
      const e = configError(() => loadConfig({ SESSION_RECHECK: raw }));
      expect(e.variable).toBe("SESSION_RECHECK");
    }
  });

  it("syncs the embedded database's commits unless EMBEDDED_DB_SYNC is off, and names it when it is wrong", () => {
    expect(loadConfig({}).EMBEDDED_DB_SYNC).toBe(true);
    expect(loadConfig({ EMBEDDED_DB_SYNC: "false" }).EMBEDDED_DB_SYNC).toBe(false);
    expect(configError(() => loadConfig({ EMBEDDED_DB_SYNC: "sometimes" })).variable).toBe("EMBEDDED_DB_SYNC");
  });

  it("treats empty and blank values as unset and trims the rest", () => {
    const c = loadConfig({ PORT: " 5000 ", DATABASE_URL: "", ADMIN_TOKEN: "   ", LOG_LEVEL: "" });
    expect(c.PORT).toBe(5000);
    expect(c.DATABASE_URL).toBeUndefined();
    expect(c.ADMIN_TOKEN).toBeUndefined();
    expect(c.LOG_LEVEL).toBe("info");
  });

  it("derives PUBLIC_URL from PORT, and strips a trailing slash from an explicit one", () => {
    expect(loadConfig({ PORT: "8080" }).PUBLIC_URL).toBe("http://localhost:8080");
    expect(loadConfig({ PUBLIC_URL: "https://postbox.example.com/" }).PUBLIC_URL).toBe("https://postbox.example.com");
  });

  it("turns introspection off in production unless INTROSPECTION says otherwise", () => {
    expect(loadConfig({ NODE_ENV: "production" }).INTROSPECTION).toBe(false);
    expect(loadConfig({ NODE_ENV: "production", INTROSPECTION: "true" }).INTROSPECTION).toBe(true);
    expect(loadConfig({ NODE_ENV: "development", INTROSPECTION: "off" }).INTROSPECTION).toBe(false);
    expect(loadConfig({ NODE_ENV: "test" }).INTROSPECTION).toBe(true);
  });

  it("resolves DATA_DIR to an absolute path", () => {
    expect(loadConfig({ DATA_DIR: "some/dir" }).DATA_DIR).toBe(path.resolve("some/dir"));
  });

  it("derives the HTTP body limit from MAX_PUSH_BYTES (base64 plus room for the rest of the request)", () => {
    const c = loadConfig({ MAX_PUSH_BYTES: "3MiB" });
    expect(c.BODY_LIMIT_BYTES).toBe(Math.ceil((3 * 1024 * 1024 * 4) / 3) + 1024 * 1024);
  });

  it.each([
    ["1", true],
    ["true", true],
    ["YES", true],
    ["on", true],
    ["0", false],
    ["false", false],
    ["No", false],
    ["off", false],
  ])("reads the boolean %j", (raw, value) => {
    expect(loadConfig({ ALLOW_PRIVATE_URLS: raw }).ALLOW_PRIVATE_URLS).toBe(value);
  });

  it.each([
    ["false", false],
    ["0", false],
    ["true", 1],
    ["1", 1],
    ["2", 2],
    ["10.0.0.0/8, loopback", ["10.0.0.0/8", "loopback"]],
    ["192.0.2.10,2001:db8::/32", ["192.0.2.10", "2001:db8::/32"]],
  ])("reads TRUST_PROXY %j: never every hop", (raw, value) => {
    expect(loadConfig({ TRUST_PROXY: raw }).TRUST_PROXY).toEqual(value);
  });

  it("accepts the documented URL schemes", () => {
    const c = loadConfig({ DATABASE_URL: "postgresql://u:p@db:5432/postbox", REDIS_URL: "redis://127.0.0.1:6379", PUBLIC_URL: "http://10.0.0.5:4000" });
    expect(c.DATABASE_URL).toBe("postgresql://u:p@db:5432/postbox");
    expect(c.REDIS_URL).toBe("redis://127.0.0.1:6379");
    expect(loadConfig({ DATABASE_URL: "postgres://db/x" }).DATABASE_URL).toBe("postgres://db/x");
  });

  it("accepts an ADMIN_TOKEN of 32 characters or more", () => {
    expect(loadConfig({ ADMIN_TOKEN: "a".repeat(32) }).ADMIN_TOKEN).toBe("a".repeat(32));
  });

  it.each([
    ["PORT", "abc", /whole number from 0 to 65535/],
    ["PORT", "65536", /whole number/],
    ["PORT", "-1", /whole number/],
    ["PORT", "80.5", /whole number/],
    ["NODE_ENV", "staging", /one of development, production, test/],
    ["LOG_LEVEL", "verbose", /one of/],
    ["TRUST_PROXY", "maybe", /comma-separated list of proxy addresses/],
    ["TRUST_PROXY", "11", /at most 10 proxies/],
    ["TRUST_PROXY", "10.0.0.0/33", /comma-separated list/],
    ["INTROSPECTION", "sometimes", /true or false/],
    ["PUBLIC_URL", "ftp://example.com", /must start with http: or https:/],
    ["PUBLIC_URL", "not a url", /must be a URL/],
    ["DATABASE_URL", "mysql://localhost/db", /postgresql:/],
    ["REDIS_URL", "http://localhost:6379", /redis:/],
    ["ADMIN_TOKEN", "too-short", /at least 32 characters/],
    ["SERVER_SECRET", "short", /at least 32 characters/],
    ["SESSION_TTL", "forever", /duration/],
    ["ASSERTION_MAX_SKEW", "0", /positive/],
    ["MAX_PUSH_BYTES", "huge", /size/],
    ["MAX_PUSH_BYTES", "2GiB", /at most 1GiB/],
    ["WS_MAX_OPERATIONS", "0", /from 1 to 100000/],
    ["GRAPHQL_MAX_DEPTH", "0", /from 1 to 100/],
    ["DATABASE_POOL_SIZE", "1000", /from 2 to 200/],
    // One connection would hang the start: the migration lock holds it while the migrations wait for another.
    ["DATABASE_POOL_SIZE", "1", /whole number from 2 to 200/],
  ])("refuses %s=%j with a message naming it", (name, raw, message) => {
    const e = configError(() => loadConfig({ [name]: raw }));
    expect(e.variable).toBe(name);
    expect(e.message).toMatch(new RegExp(`^Invalid configuration: ${name} `));
    expect(e.message).toMatch(message);
  });

  it("names the variable for every SPEC entry whose parser refuses garbage, and documents every entry", () => {
    let refusing = 0;
    for (const [name, spec] of Object.entries(SPEC)) {
      expect(spec.doc.length).toBeGreaterThan(10);
      let error: unknown;
      try {
        loadConfig({ [name]: "\u0001not-a-valid-value" });
      } catch (e) {
        error = e;
      }
      if (error === undefined) continue; // free-form values (HOST, DATA_DIR)
      refusing++;
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).variable).toBe(name);
      expect((error as Error).message).toContain(name);
    }
    expect(refusing).toBeGreaterThan(20);
  });
});

describe("the entry point", () => {
  it("stops at boot with exit status 2 and a message naming a bad PORT", () => {
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const r = spawnSync(process.execPath, ["--import", "./test/helpers/swc-register.mjs", "src/main.ts"], {
      cwd: root,
      env: { PATH: process.env.PATH, PORT: "not-a-port", DATA_DIR: path.join(root, "data-should-not-be-created") },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(r.stderr).toContain('postbox: Invalid configuration: PORT must be a whole number from 0 to 65535 (got "not-a-port")');
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(existsSync(path.join(root, "data-should-not-be-created"))).toBe(false);
  });
});
