// The operator CLI's toolkit, shared by every command group in src/cli/commands/:
// argument parsing (node:util parseArgs), the admin API client (undici), output
// (human text, or one JSON value with --json) and errors (stderr, non-zero exit).
// The CLI never opens the database and never imports GraphQL/type-graphql code:
// it talks to the running server's admin API (PGlite is single-process, and tsx
// cannot run decorated classes).
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { errors as undiciErrors, request } from "undici";

export const DEFAULT_URL = "http://localhost:4000";
export const PROG = "npm run cli --";

// ---------------------------------------------------------------- errors

/** A failure to report on stderr; `exitCode` 2 means the command line was wrong. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    readonly code?: string,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export class UsageError extends CliError {
  constructor(message: string) {
    super(message, 2, "USAGE");
    this.name = "UsageError";
  }
}

/** The server refused the request: carries its stable error code and HTTP status. */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    readonly field?: string,
    /** The server's `extensions.reissue`: a proof of the postbox key gets a new user credential. */
    readonly reissue = false,
  ) {
    super(message, 1, code);
    this.name = "ApiError";
  }
}

/** The request never reached the server (the connection itself was refused, or the address did not resolve). */
export class NotSent extends CliError {
  constructor(message: string, exitCode = 1) {
    super(message, exitCode);
    this.name = "NotSent";
  }
}

/**
 * True when the server certainly did not carry out a request that failed with `e`:
 * it refused it with an error answer (4xx, or a GraphQL error other than an internal
 * one), or the request never left. A timeout, a dropped connection, a 5xx or an
 * internal error leave the outcome unknown: the server may have committed it.
 */
export function certainlyNotDone(e: unknown): boolean {
  if (e instanceof NotSent) return true;
  return e instanceof ApiError && e.status < 500 && e.code !== "INTERNAL_SERVER_ERROR";
}

// ---------------------------------------------------------------- commands

export interface OptionSpec {
  type: "string" | "boolean";
  /** May be given several times (values collected in order). */
  multiple?: boolean;
  short?: string;
  /** Placeholder shown in help, e.g. "<file>". */
  value?: string;
  description: string;
}

export interface Command {
  summary: string;
  /** Required positional arguments, by name (shown as <name> in usage). A last name ending in "..." takes one or more values (see Ctx.rest). */
  args?: string[];
  options?: Record<string, OptionSpec>;
  /** Usage line after "<group> <command>"; generated from args and options when absent. */
  usage?: string;
  /** More text for --help: rules, examples. */
  help?: string;
  run(ctx: Ctx): Promise<void>;
}

export interface CommandGroup {
  summary: string;
  commands: Record<string, Command>;
}

/** Registry entry: loads a group module whose default export is a CommandGroup. */
export type GroupLoader = () => Promise<{ default: CommandGroup }>;

export function defineGroup(group: CommandGroup): CommandGroup {
  return group;
}

export interface Ctx {
  /** Positional arguments by the names in Command.args. */
  args: Record<string, string>;
  /** Every value of a variadic last argument ("name..."), in order; empty otherwise. */
  rest: string[];
  json: boolean;
  env: NodeJS.ProcessEnv;
  admin: AdminClient;
  /** A string option, or undefined. */
  string(name: string): string | undefined;
  /** A string option that must be present. */
  requireString(name: string): string;
  /** A repeatable string option (empty when absent). */
  strings(name: string): string[];
  flag(name: string): boolean;
  /** Prints `value` as JSON with --json, else `human(value)`. Call once per command. */
  print<T>(value: T, human: (v: T) => string): void;
  /** For commands that print as things happen (instead of print): one line per call, a JSON object per line with --json. */
  printLine<T>(value: T, human: (v: T) => string): void;
  /** Progress notes for people (stderr, so stdout stays machine-readable). */
  note(message: string): void;
}

const COMMON_OPTIONS: Record<string, OptionSpec> = {
  json: { type: "boolean", description: "Print the result as one JSON value on stdout." },
  help: { type: "boolean", short: "h", description: "Show this help." },
};

// ---------------------------------------------------------------- admin API client

export interface AdminClientOptions {
  baseUrl: string;
  /** Resolved on first use, so that --help and usage errors need no token. */
  token: () => Promise<string>;
}

/** JSON over HTTP to the server's /admin API. Errors become CliError/ApiError with actionable messages. */
export class AdminClient {
  readonly baseUrl: string;
  private tokenPromise?: Promise<string>;

  constructor(private readonly opts: AdminClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
  }

  /** `timeoutMs`: how long to wait for the answer (30 s unless the route is known to take longer). */
  get<T = unknown>(p: string, opts: { timeoutMs?: number } = {}): Promise<T> {
    return this.request<T>("GET", p, undefined, opts);
  }
  post<T = unknown>(p: string, body?: unknown): Promise<T> {
    return this.request<T>("POST", p, body ?? {});
  }
  patch<T = unknown>(p: string, body: unknown): Promise<T> {
    return this.request<T>("PATCH", p, body);
  }
  delete<T = unknown>(p: string): Promise<T> {
    return this.request<T>("DELETE", p);
  }

  async request<T>(method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE", p: string, body?: unknown, { timeoutMs = DEFAULT_TIMEOUT_MS }: { timeoutMs?: number } = {}): Promise<T> {
    const token = await (this.tokenPromise ??= this.opts.token());
    const url = `${this.baseUrl}/admin${p}`;
    let res;
    try {
      res = await request(url, {
        method,
        headers: { authorization: `Bearer ${token}`, accept: "application/json", ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (e) {
      throw connectionError(this.baseUrl, e, timeoutMs);
    }
    const text = await res.body.text().catch(() => {
      throw new CliError(`The answer from ${this.baseUrl} to ${method} /admin${p} broke off.`);
    });
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new CliError(`The server at ${this.baseUrl} answered ${method} /admin${p} with HTTP ${res.statusCode} and a body that is not JSON: is POSTBOX_URL the address of a Postbox server?`);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return json as T;
    const err = (json as { error?: { code?: string; message?: string; field?: string } } | undefined)?.error;
    if (!err?.code) {
      throw new CliError(`The server at ${this.baseUrl} answered ${method} /admin${p} with HTTP ${res.statusCode}: is POSTBOX_URL the address of a Postbox server?`);
    }
    if (res.statusCode === 401) {
      throw new ApiError(401, err.code, `The server at ${this.baseUrl} refused the admin token. Use this server's token: ADMIN_TOKEN as the server has it, or the file admin-token in the server's data directory.`);
    }
    throw new ApiError(res.statusCode, err.code, err.message ?? `HTTP ${res.statusCode}`, err.field);
  }
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** Connection errors that prove a request never left: the connect itself failed. */
export const NOT_SENT_CODES: ReadonlySet<string> = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]);

function connectionError(baseUrl: string, e: unknown, timeoutMs = DEFAULT_TIMEOUT_MS): CliError {
  const err = e as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = err.code ?? err.cause?.code;
  if (e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError) {
    return new CliError(`The server at ${baseUrl} did not answer within ${Math.round(timeoutMs / 1000)} s.`);
  }
  if (e instanceof undiciErrors.InvalidArgumentError) return new NotSent(`POSTBOX_URL is not a usable URL (${baseUrl}).`, 2);
  const message = `Cannot reach the Postbox server${code ? ` (${code})` : ""}: is the server running at ${baseUrl}? Start it with \`npm start\`, or set POSTBOX_URL to its address.`;
  // Only a failed connect proves the request never left; a connection lost later (UND_ERR_SOCKET) may have carried it.
  return NOT_SENT_CODES.has(code ?? "") ? new NotSent(message) : new CliError(message);
}

/** ADMIN_TOKEN, or the token the server wrote into `<DATA_DIR or ./data>/admin-token`. */
export async function resolveAdminToken(env: NodeJS.ProcessEnv): Promise<string> {
  const fromEnv = env.ADMIN_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const file = path.resolve(env.DATA_DIR?.trim() || "./data", "admin-token");
  try {
    const token = (await readFile(file, "utf8")).trim();
    if (token) return token;
    throw new CliError(`The admin token file ${file} is empty. Restart the server to regenerate it, or set ADMIN_TOKEN.`);
  } catch (e) {
    if (e instanceof CliError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new CliError(
        `No admin token: ADMIN_TOKEN is not set and ${file} does not exist. The server writes that file on its first start; run the CLI from the server's directory (or set DATA_DIR to its data directory), or set ADMIN_TOKEN.`,
      );
    }
    if (code === "EACCES") throw new CliError(`Cannot read ${file} (permission denied): run the CLI as the server's user, or set ADMIN_TOKEN.`);
    throw new CliError(`Cannot read ${file}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------- parsing, help, dispatch

function optionUsage(name: string, o: OptionSpec): string {
  return o.type === "boolean" ? `--${name}` : `--${name} ${o.value ?? "<value>"}`;
}

function commandUsage(group: string, name: string, cmd: Command): string {
  const tail =
    cmd.usage ??
    [...(cmd.args ?? []).map((a) => `<${a}>`), ...Object.entries(cmd.options ?? {}).map(([n, o]) => `[${optionUsage(n, o)}]${o.multiple ? "..." : ""}`)].join(" ");
  return `${PROG} ${group} ${name}${tail ? " " + tail : ""} [--json]`;
}

function columns(rows: [string, string][], indent = "  "): string {
  const width = Math.max(...rows.map(([a]) => a.length));
  return rows.map(([a, b]) => `${indent}${a.padEnd(width)}  ${b}`).join("\n");
}

export function commandHelp(group: string, name: string, cmd: Command): string {
  const opts = { ...(cmd.options ?? {}), ...COMMON_OPTIONS };
  const rows = Object.entries(opts).map(([n, o]): [string, string] => [
    `${o.short ? `-${o.short}, ` : ""}${optionUsage(n, o)}`,
    o.description + (o.multiple ? " Repeatable." : ""),
  ]);
  return [`Usage: ${commandUsage(group, name, cmd)}`, "", cmd.summary, "", "Options:", columns(rows), ...(cmd.help ? ["", cmd.help.trimEnd()] : [])].join("\n");
}

export function groupHelp(group: string, g: CommandGroup): string {
  const rows = Object.entries(g.commands).map(([n, c]): [string, string] => [n, c.summary]);
  return [
    `Usage: ${PROG} ${group} <command> [options]`,
    "",
    g.summary,
    "",
    "Commands:",
    columns(rows),
    "",
    ...Object.entries(g.commands).map(([n, c]) => `  ${commandUsage(group, n, c)}`),
    "",
    `Run \`${PROG} ${group} <command> --help\` for a command's options.`,
  ].join("\n");
}

export function mainHelp(groups: [string, CommandGroup][]): string {
  return [
    `Usage: ${PROG} <group> <command> [options]`,
    "",
    "Operator commands for a running Postbox server. The CLI calls the server's admin API;",
    "it never opens the database itself.",
    "",
    "Groups:",
    columns(groups.map(([n, g]) => [n, g.summary])),
    "",
    "Environment:",
    columns([
      ["POSTBOX_URL", `The server's address (default ${DEFAULT_URL}).`],
      ["ADMIN_TOKEN", "The admin token. Default: the file <DATA_DIR or ./data>/admin-token that the server writes."],
      ["DATA_DIR", "Where to find that file (default ./data)."],
    ]),
    "",
    `Run \`${PROG} <group> --help\` for a group's commands, \`${PROG} <group> <command> --help\` for one command.`,
    "Every command takes --json: the result as one JSON value on stdout. Errors go to stderr with a non-zero exit status.",
  ].join("\n");
}

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
}

const defaultIo: Io = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
};

async function runCommand(group: string, name: string, cmd: Command, argv: string[], io: Io): Promise<number> {
  const specs = { ...(cmd.options ?? {}), ...COMMON_OPTIONS };
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(
        Object.entries(specs).map(([n, o]) => [n, { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) }]),
      ),
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    if (!String((e as NodeJS.ErrnoException).code).startsWith("ERR_PARSE_ARGS")) throw e;
    throw new UsageError(`${(e as Error).message.replace(/\. To specify a positional argument.*$/s, ".")}\nRun \`${PROG} ${group} ${name} --help\` for usage.`);
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  if (values.help) {
    io.stdout(commandHelp(group, name, cmd) + "\n");
    return 0;
  }
  const names = cmd.args ?? [];
  const variadic = names.length > 0 && names[names.length - 1].endsWith("...");
  if (variadic ? parsed.positionals.length < names.length : parsed.positionals.length !== names.length) {
    const missing = names.slice(parsed.positionals.length).map((a) => `<${a}>`);
    throw new UsageError(
      (missing.length ? `Missing ${missing.join(" ")}.` : `Unexpected argument ${JSON.stringify(parsed.positionals[names.length])}.`) +
        `\nUsage: ${commandUsage(group, name, cmd)}`,
    );
  }
  const json = values.json === true;
  let printed = false;
  const ctx: Ctx = {
    args: Object.fromEntries(names.map((n, i) => [n, parsed.positionals[i]])),
    rest: variadic ? parsed.positionals.slice(names.length - 1) : [],
    json,
    env: io.env,
    admin: new AdminClient({ baseUrl: io.env.POSTBOX_URL?.trim() || DEFAULT_URL, token: () => resolveAdminToken(io.env) }),
    string: (n) => {
      const v = values[n];
      if (typeof v !== "string") return undefined;
      if (v.trim() === "") throw new UsageError(`--${n} must not be empty.`);
      return v;
    },
    requireString: (n) => {
      const v = ctx.string(n);
      if (v === undefined) throw new UsageError(`--${n} is required.\nUsage: ${commandUsage(group, name, cmd)}`);
      return v;
    },
    strings: (n) => {
      const v = values[n];
      return Array.isArray(v) ? v : typeof v === "string" ? [v] : [];
    },
    flag: (n) => values[n] === true,
    print(value, human) {
      if (printed) throw new Error("a command printed its result twice");
      printed = true;
      io.stdout((json ? JSON.stringify(value, null, 2) : human(value)) + "\n");
    },
    printLine(value, human) {
      io.stdout((json ? JSON.stringify(value) : human(value)) + "\n");
    },
    note: (m) => io.stderr(m + "\n"),
  };
  await cmd.run(ctx);
  return 0;
}

/** Parses argv (without node and script), runs the command, and returns the exit code. */
export async function runCli(argv: string[], registry: Record<string, GroupLoader>, io: Io = defaultIo): Promise<number> {
  // One broken group module must not take the top-level help down with it.
  const loadAll = async () =>
    Promise.all(
      Object.entries(registry).map(async ([n, load]): Promise<[string, CommandGroup]> => {
        try {
          return [n, (await load()).default];
        } catch (e) {
          return [n, { summary: `(cannot be loaded: ${e instanceof Error ? e.message : String(e)})`, commands: {} }];
        }
      }),
    );
  try {
    const [groupName, commandName, ...rest] = argv;
    if (!groupName || groupName === "--help" || groupName === "-h" || groupName === "help") {
      io.stdout(mainHelp(await loadAll()) + "\n");
      return groupName ? 0 : 2;
    }
    const loader = registry[groupName];
    if (!loader) throw new UsageError(`Unknown command group "${groupName}". Groups: ${Object.keys(registry).join(", ")}. Run \`${PROG} --help\`.`);
    const group = (await loader()).default;
    if (!commandName || commandName === "--help" || commandName === "-h" || commandName === "help") {
      io.stdout(groupHelp(groupName, group) + "\n");
      return commandName ? 0 : 2;
    }
    const cmd = Object.hasOwn(group.commands, commandName) ? group.commands[commandName] : undefined;
    if (!cmd) throw new UsageError(`Unknown command "${groupName} ${commandName}". Commands: ${Object.keys(group.commands).join(", ")}. Run \`${PROG} ${groupName} --help\`.`);
    return await runCommand(groupName, commandName, cmd, rest, io);
  } catch (e) {
    if (e instanceof CliError) {
      io.stderr(`error: ${e.message}${e instanceof ApiError ? ` [${e.code}${e.field ? `, field ${e.field}` : ""}]` : ""}\n`);
      return e.exitCode;
    }
    io.stderr(`error: unexpected failure: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}

/**
 * Waits between reconnection attempts: 1 s, doubling up to a cap of 30 s, back to
 * 1 s once a connection works again (reset).
 */
export class Backoff {
  private ms: number;

  constructor(
    private readonly firstMs = 1000,
    private readonly maxMs = 30_000,
  ) {
    this.ms = firstMs;
  }

  /** The wait before the next attempt; each call doubles the one after it, up to the cap. */
  next(): number {
    const wait = this.ms;
    this.ms = Math.min(this.ms * 2, this.maxMs);
    return wait;
  }

  reset(): void {
    this.ms = this.firstMs;
  }
}

// ---------------------------------------------------------------- small formatting helpers

/** 604800 → "7d", 5400 → "90m", 61 → "61s". */
export function formatSeconds(s: number): string {
  for (const [unit, n] of [["d", 86_400], ["h", 3600], ["m", 60]] as const) if (s >= n && s % n === 0) return `${s / n}${unit}`;
  return `${s}s`;
}

/** Simple aligned table for list output. */
export function table(header: string[], rows: string[][]): string {
  if (rows.length === 0) return "";
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ");
  return [line(header), ...rows.map(line)].join("\n");
}
