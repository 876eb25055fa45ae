#!/usr/bin/env node
// Signs a createSession assertion, as an application does before each session:
//   node examples/sign-assertion.mjs <private-key.pem> <appId> <contractId> [alg]
// prints a compact JWS (typ JWT) with client_id "<appId>_<contractId>", a fresh
// random nonce and the current time in Unix milliseconds. alg defaults from the
// key type: PS512 for RSA (PS256 also works if registered so), ES256, EdDSA.
import { randomBytes, createPrivateKey } from "node:crypto";
import { readFile } from "node:fs/promises";
import { SignJWT, importPKCS8 } from "jose";

const [keyFile, appId, contractId, algArg] = process.argv.slice(2);
if (!keyFile || !appId || !contractId) {
  console.error("usage: node examples/sign-assertion.mjs <private-key.pem> <appId> <contractId> [PS512|PS256|ES256|EdDSA]");
  process.exit(2);
}
const pem = await readFile(keyFile, "utf8");
const type = createPrivateKey(pem).asymmetricKeyType; // "rsa" | "ec" | "ed25519"
const alg = algArg ?? { rsa: "PS512", ec: "ES256", ed25519: "EdDSA" }[type];
const key = await importPKCS8(pem, alg);

const assertion = await new SignJWT({
  client_id: `${appId}_${contractId}`,
  nonce: randomBytes(24).toString("base64url"), // single use: sign a new assertion per session
  timestamp: Date.now(),
})
  .setProtectedHeader({ alg, typ: "JWT" })
  .sign(key);
console.log(assertion);
