// The encryption thread (see jwe.thread.ts for the other end). Requests come in
// batches, { id, jobs: [{ op, key, data }] }: "wrap" encrypts a content key (data) to
// the user's key, "seal" writes the whole JWEs of small plaintexts (data, an array;
// a push's file and descriptor) under one key agreement, "x25519Keys" makes `count`
// ephemeral X25519 key pairs (the private keys go back as KeyObjects), "agreements"
// makes `count` ECDH-ES key agreements with the user's EC key (their key-encryption
// keys move back, not copied). Each job is answered on its own,
// { id, i, result: { ok } | { error } }. Every key and plaintext that arrives here
// is wiped once used.
//
// Plain JavaScript on purpose: worker threads load files as they are.
import { parentPort } from "node:worker_threads";
import { newAgreements, newEphemeralX25519, sealJwes, wrapKey } from "./jwe-writer.mjs";

function run({ op, key, data, count }) {
  if (op === "x25519Keys") return Array.from({ length: count }, () => newEphemeralX25519());
  if (op === "agreements") return newAgreements(key, count);
  try {
    if (op === "seal") return sealJwes(key, data);
    if (op === "wrap") return wrapKey(key, data);
    throw new Error(`unknown operation ${op}`);
  } finally {
    for (const d of Array.isArray(data) ? data : [data]) d.fill(0);
  }
}

parentPort.on("message", ({ id, jobs }) => {
  // Each answer goes as soon as it is ready: a push waits for its own job, not for the batch.
  jobs.forEach((job, i) => {
    let result;
    try {
      result = { ok: run(job) };
    } catch (e) {
      result = { error: e instanceof Error ? e.message : String(e) };
    }
    parentPort.postMessage({ id, i, result }, result.ok?.keks ? [result.ok.keks.buffer] : []);
  });
});
