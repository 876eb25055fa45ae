// Key material for `app create`, `contract add` and `app rotate-key`: a public key
// the application supplied (PEM or JWK file), or a key pair generated here whose
// private half is written to a file for the operator to hand over. Only public
// keys ever leave this process; a private key given by mistake is refused here,
// before anything is sent.
import { constants } from "node:fs";
import { access, readFile, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { exportJWK, exportPKCS8, generateKeyPair } from "jose";
import { CliError, UsageError, type Ctx, type OptionSpec } from "./lib.js";

export const SIGNING_ALGS = ["PS512", "PS256", "ES256", "EdDSA"] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

export const KEY_OPTIONS: Record<string, OptionSpec> = {
  "public-key": { type: "string", value: "<file>", description: "The application's public key: a PEM (SPKI) or JWK file." },
  "generate-key": { type: "string", value: "<out-file>", description: "Generate a key pair here; write the private key (PKCS#8 PEM, mode 0600) to this new file." },
  alg: { type: "string", value: "<alg>", description: "Signing algorithm: PS512 (default for RSA), PS256, ES256 or EdDSA. With --generate-key it picks the key type." },
};

export interface KeyChoice {
  /** What the admin API takes: a PEM string or a JWK object. */
  publicKey: string | Record<string, unknown>;
  alg?: SigningAlg;
  /** Set when a key pair was generated: the private key file (absolute path). */
  privateKeyFile?: string;
  /** Deletes the generated private key file (the server refused the request). */
  discard(): Promise<void>;
}

function parseAlg(raw: string | undefined): SigningAlg | undefined {
  if (raw === undefined) return undefined;
  const alg = SIGNING_ALGS.find((a) => a.toLowerCase() === raw.toLowerCase());
  if (!alg) throw new UsageError(`--alg must be one of ${SIGNING_ALGS.join(", ")} (got "${raw}").`);
  return alg;
}

/** Reads --public-key or performs --generate-key (exactly one of them). */
export async function chooseKey(ctx: Ctx): Promise<KeyChoice> {
  const pub = ctx.string("public-key");
  const gen = ctx.string("generate-key");
  const alg = parseAlg(ctx.string("alg"));
  if (pub && gen) throw new UsageError("Give either --public-key <file> or --generate-key <out-file>, not both.");
  if (!pub && !gen) throw new UsageError("A key is required: --public-key <file> (the application's public key) or --generate-key <out-file> (make a key pair here).");
  if (pub) return { publicKey: await readPublicKeyFile(pub), alg, discard: async () => {} };
  const generated = await generateKeyFile(gen!, alg ?? "PS512");
  return { publicKey: generated.publicJwk, alg: generated.alg, privateKeyFile: generated.file, discard: () => unlink(generated.file).catch(() => {}) };
}

export async function readPublicKeyFile(file: string): Promise<string | Record<string, unknown>> {
  let text: string;
  try {
    text = (await readFile(file, "utf8")).trim();
  } catch (e) {
    throw new CliError(`Cannot read the public key file ${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "it does not exist" : (e as Error).message}.`, 2);
  }
  if (text.includes("-----BEGIN")) {
    if (/PRIVATE KEY/.test(text)) {
      throw new CliError(`${file} holds a private key. Register the public key only (openssl pkey -in ${file} -pubout > public.pem), or use --generate-key.`, 2);
    }
    return text;
  }
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new CliError(`${file} is neither a PEM public key nor a JWK (JSON).`, 2);
  }
  // A JWK Set with one key is accepted too.
  const keys = (jwk as { keys?: unknown })?.keys;
  if (Array.isArray(keys)) {
    if (keys.length !== 1) throw new CliError(`${file} is a JWK Set with ${keys.length} keys; give a file with exactly one.`, 2);
    jwk = keys[0];
  }
  if (!jwk || typeof jwk !== "object" || Array.isArray(jwk)) throw new CliError(`${file} is not a JWK object.`, 2);
  if ("d" in jwk || "k" in jwk) throw new CliError(`${file} holds private or secret key material. Register the public key only.`, 2);
  return jwk as Record<string, unknown>;
}

export async function generateKeyFile(file: string, alg: SigningAlg): Promise<{ file: string; alg: SigningAlg; publicJwk: Record<string, unknown> }> {
  const abs = path.resolve(file);
  const exists = await access(abs, constants.F_OK).then(
    () => true,
    () => false,
  );
  if (exists) throw new CliError(`${abs} already exists; refusing to overwrite a key file. Choose another path or delete it first.`, 2);
  // 2048-bit RSA is what the server requires at least and what digi.me's SDKs generate.
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg.startsWith("PS") ? { modulusLength: 2048 } : {}) });
  const pem = await exportPKCS8(privateKey);
  try {
    await writeFile(abs, pem, { mode: 0o600, flag: "wx" });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw new CliError(`${abs} already exists; refusing to overwrite a key file.`, 2);
    throw new CliError(`Cannot write the private key to ${abs}: ${code === "ENOENT" ? "its folder does not exist" : (e as Error).message}.`, 2);
  }
  return { file: abs, alg, publicJwk: (await exportJWK(publicKey)) as Record<string, unknown> };
}
