// `npm run cli -- user …`: the user's side of consent, for a user without a
// browser. Unlike the operator commands it needs no admin token: the consent
// link is the credential, and the server's GraphQL address is derived from it
// (`<base>/consent/<code>` → `<base>/graphql`). The key pair is generated here,
// on the user's machine; only the public key is sent.
import { open, unlink } from "node:fs/promises";
import path from "node:path";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import { errors as undiciErrors, request } from "undici";
import { writeAtomically } from "../../infra/server-files.js";
import { ApiError, CliError, NOT_SENT_CODES, NotSent, PROG, UsageError, certainlyNotDone, defineGroup } from "../lib.js";

const ALGS = ["RSA-OAEP-256", "ECDH-ES+A256KW"] as const;
type Alg = (typeof ALGS)[number];

interface ConsentLink {
  code: string;
  /** The server's base URL (PUBLIC_URL). */
  serverUrl: string;
  graphqlUrl: string;
}

export function parseConsentUrl(raw: string): ConsentLink {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`"${raw}" is not a URL. Pass the whole consent link, e.g. https://postbox.example.com/consent/<code>.`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new UsageError("The consent link must be an http(s) URL.");
  const m = /^(.*)\/consent\/([A-Za-z0-9_-]+)\/?$/.exec(u.pathname);
  if (!m) throw new UsageError("That is not a consent link: its path must end in /consent/<code>.");
  const serverUrl = `${u.origin}${m[1]}`;
  return { code: m[2], serverUrl, graphqlUrl: `${serverUrl}/graphql` };
}

async function gql<T>(url: string, query: string, variables: Record<string, unknown>): Promise<T> {
  let res;
  try {
    res = await request(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({ query, variables }),
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
  } catch (e) {
    if (e instanceof undiciErrors.HeadersTimeoutError || e instanceof undiciErrors.BodyTimeoutError) throw new CliError(`The server at ${url} did not answer within 30 s.`);
    const code = (e as NodeJS.ErrnoException).code ?? (e as { cause?: NodeJS.ErrnoException }).cause?.code;
    const message = `Cannot reach the Postbox server at ${url}${code ? ` (${code})` : ""}. Check the consent link and your connection.`;
    // Only a failed connect proves the request never left; a connection lost later may have carried it.
    throw NOT_SENT_CODES.has(code ?? "") ? new NotSent(message) : new CliError(message);
  }
  const text = await res.body.text().catch(() => {
    throw new CliError(`The answer from ${url} broke off.`);
  });
  let body: { data?: T | null; errors?: { message: string; extensions?: { code?: string; field?: string } }[] };
  try {
    body = JSON.parse(text);
  } catch {
    throw new CliError(`The server at ${url} answered HTTP ${res.statusCode} with a body that is not JSON: is the consent link from a Postbox server?`);
  }
  const err = body.errors?.[0];
  if (err) throw new ApiError(res.statusCode, err.extensions?.code ?? "ERROR", err.message, err.extensions?.field);
  if (!body.data) throw new CliError(`The server at ${url} answered HTTP ${res.statusCode} without data.`);
  return body.data;
}

const CONSENT_REQUEST = /* GraphQL */ `
  query ConsentRequest($code: String!) {
    consentRequest(code: $code) { postboxId applicationName contractId postboxMode reference status canRespond consentExpiresAt expiresAt hasCallback }
  }
`;

const ACCEPT = /* GraphQL */ `
  mutation AcceptPostbox($input: AcceptPostboxInput!) {
    acceptPostbox(input: $input) {
      postboxId status publicKeyThumbprint redirectUrl
      credential { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt tokenType }
    }
  }
`;

const DECLINE = /* GraphQL */ `
  mutation DeclinePostbox($input: DeclinePostboxInput!) {
    declinePostbox(input: $input) { postboxId status redirectUrl }
  }
`;

interface ConsentInfo {
  postboxId: string;
  applicationName: string;
  contractId: string;
  postboxMode: string;
  reference: string | null;
  status: string;
  canRespond: boolean;
  consentExpiresAt: string;
  expiresAt: string;
  hasCallback: boolean;
}

interface Accepted {
  postboxId: string;
  status: string;
  publicKeyThumbprint: string;
  redirectUrl: string | null;
  credential: { accessToken: string; accessTokenExpiresAt: string; refreshToken: string; refreshTokenExpiresAt: string; tokenType: string };
}

async function makeKeyPair(alg: Alg): Promise<{ publicJwk: JWK; privateJwk: JWK }> {
  // X25519, as the web app makes: the server's key agreement per encrypted file is cheapest with it.
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === "RSA-OAEP-256" ? { modulusLength: 3072 } : { crv: "X25519" }) });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub, "sha256");
  return { publicJwk: { ...pub, alg, use: "enc", kid }, privateJwk: { ...(await exportJWK(privateKey)), alg, use: "enc", kid } };
}

function describe(c: ConsentInfo): string {
  return [
    `${c.applicationName} asks to open a postbox for you${c.reference ? ` (their reference: ${c.reference})` : ""}.`,
    `Postbox ${c.postboxId}: ${c.status}, ${c.postboxMode === "ONGOING" ? "ongoing" : "one-off"}, until ${c.expiresAt}.`,
    c.canRespond ? `Accept or decline before ${c.consentExpiresAt}.` : "This link can no longer be accepted or declined.",
  ].join("\n");
}

export default defineGroup({
  summary: "A user's side of consent without a browser: show, accept or decline a consent link.",
  commands: {
    show: {
      summary: "Show who asks for a postbox and until when the consent link works.",
      args: ["consentUrl"],
      async run(ctx) {
        const link = parseConsentUrl(ctx.args.consentUrl);
        const { consentRequest } = await gql<{ consentRequest: ConsentInfo }>(link.graphqlUrl, CONSENT_REQUEST, { code: link.code });
        ctx.print(consentRequest, describe);
      },
    },
    accept: {
      summary: "Generate a key pair here, accept the postbox with its public key, and save the private key and credential.",
      args: ["consentUrl"],
      options: {
        "key-out": { type: "string", value: "<file>", description: "File for the private JWK and the credential (created with mode 0600; never overwritten)." },
        alg: { type: "string", value: "<alg>", description: "RSA-OAEP-256 (RSA 3072) or ECDH-ES+A256KW (X25519, the default)." },
      },
      help: [
        "The file holds the private key and the tokens: anyone with it can read this postbox. Keep it safe.",
        "Prints { postboxId, status } (with --json, one JSON object).",
        "If no clear answer comes back, the file keeps the private key without a credential; the error says how to check and recover.",
      ].join("\n"),
      async run(ctx) {
        const link = parseConsentUrl(ctx.args.consentUrl);
        const keyOut = path.resolve(ctx.requireString("key-out"));
        const alg = (ctx.string("alg") ?? "ECDH-ES+A256KW") as Alg;
        if (!ALGS.includes(alg)) throw new UsageError(`--alg must be ${ALGS.join(" or ")}.`);

        // Claim the file first, so a failure to save never follows a successful acceptance.
        let file;
        try {
          file = await open(keyOut, "wx", 0o600);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === "EEXIST") throw new CliError(`${keyOut} already exists; it may hold another postbox's key. Choose a new file.`);
          throw new CliError(`Cannot create ${keyOut}: ${(e as Error).message}`);
        }
        // True once the server may hold the public key (it accepted, or gave no clear answer):
        // the file is then the only copy of the private key, so it stays.
        let keep = false;
        let closed = false;
        try {
          const { consentRequest: info } = await gql<{ consentRequest: ConsentInfo }>(link.graphqlUrl, CONSENT_REQUEST, { code: link.code });
          ctx.note(`Accepting a postbox from ${info.applicationName} (${info.postboxId}).`);
          const keys = await makeKeyPair(alg);
          const base = { postboxId: info.postboxId, applicationName: info.applicationName, serverUrl: link.serverUrl, graphqlUrl: link.graphqlUrl, privateKey: keys.privateJwk };
          // The private key is on disk before the public one leaves, so a lost answer cannot lose it.
          await file.writeFile(JSON.stringify({ ...base, status: "UNCONFIRMED" }, null, 2) + "\n");
          await file.sync();
          await file.close();
          closed = true;
          let r: Accepted;
          try {
            ({ acceptPostbox: r } = await gql<{ acceptPostbox: Accepted }>(link.graphqlUrl, ACCEPT, { input: { code: link.code, publicKey: keys.publicJwk } }));
          } catch (e) {
            if (certainlyNotDone(e)) throw e;
            keep = true;
            throw new CliError(
              [
                e instanceof ApiError ? `${e.message} [${e.code}]` : (e as Error).message,
                `No clear answer came back, so the server may have accepted postbox ${info.postboxId} with this key. The private key stays in ${keyOut} (mode 0600).`,
                `Check with \`${PROG} user show ${ctx.args.consentUrl}\`: if the postbox is READY, it was accepted, and`,
                `\`${PROG} user files --key-file ${keyOut}\` gets a credential by proof of the key and saves it in that file.`,
                `If it is still PENDING, delete the file and run \`user accept\` again.`,
              ].join("\n"),
            );
          }
          keep = true;
          const record = {
            ...base,
            status: r.status,
            publicKeyThumbprint: r.publicKeyThumbprint,
            credential: r.credential,
            redirectUrl: r.redirectUrl,
            acceptedAt: new Date().toISOString(),
          };
          try {
            // Atomically: a crash leaves the old record (the key alone) or the new one, never a part.
            await writeAtomically(keyOut, JSON.stringify(record, null, 2) + "\n", false);
          } catch (e) {
            throw new CliError(
              `Postbox ${r.postboxId} is ${r.status}, but the credential could not be saved in ${keyOut} (${(e as Error).message}). The file holds the private key: \`${PROG} user files --key-file ${keyOut}\` gets a credential by proof of it.`,
            );
          }
          ctx.note(`Private key and credential written to ${keyOut} (mode 0600).`);
          ctx.print({ postboxId: r.postboxId, status: r.status, keyFile: keyOut, redirectUrl: r.redirectUrl }, (v) => `Postbox ${v.postboxId} is ${v.status}.${v.redirectUrl ? `\nReturn to the application: ${v.redirectUrl}` : ""}`);
        } finally {
          if (!closed) await file.close();
          if (!keep) await unlink(keyOut).catch(() => {});
        }
      },
    },
    decline: {
      summary: "Decline the postbox.",
      args: ["consentUrl"],
      async run(ctx) {
        const link = parseConsentUrl(ctx.args.consentUrl);
        const { declinePostbox: r } = await gql<{ declinePostbox: { postboxId: string; status: string; redirectUrl: string | null } }>(link.graphqlUrl, DECLINE, { input: { code: link.code } });
        ctx.print(r, (v) => `Postbox ${v.postboxId} is ${v.status}.${v.redirectUrl ? `\nReturn to the application: ${v.redirectUrl}` : ""}`);
      },
    },
  },
});
