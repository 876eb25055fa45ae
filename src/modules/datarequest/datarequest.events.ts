// The DATA_REQUEST_STATUS pub/sub topic (docs/design.md "Events"). Payloads are
// JSON-safe (with REDIS_URL they travel as JSON between instances). Besides the
// asking contract they name the READ contract, whose sessions may follow too:
// each event is published on the topic of both.
import type { DataRequestStatus } from "./datarequest.types.js";

export const DATA_REQUEST_STATUS_TOPIC = "DATA_REQUEST_STATUS";

/** One topic per contract, so a subscriber only receives its own contract's events. */
export function contractTopic(contractId: string): string {
  return `${DATA_REQUEST_STATUS_TOPIC}:${contractId}`;
}

export interface DataRequestStatusPayload {
  contractId: string;
  readContractId: string;
  postboxId: string;
  dataRequestId: string;
  status: DataRequestStatus;
  /** ISO time of the transition. */
  at: string;
}

const STATUSES = new Set(["PENDING", "FULFILLED", "DECLINED", "EXPIRED"]);

/** Checks a payload that came off the bus (possibly from another instance). */
export function asDataRequestPayload(raw: unknown): DataRequestStatusPayload | undefined {
  const p = raw as Partial<DataRequestStatusPayload> | null;
  if (!p || typeof p !== "object") return undefined;
  if (typeof p.contractId !== "string" || typeof p.readContractId !== "string" || typeof p.postboxId !== "string" || typeof p.dataRequestId !== "string") return undefined;
  if (typeof p.status !== "string" || !STATUSES.has(p.status) || typeof p.at !== "string") return undefined;
  return { contractId: p.contractId, readContractId: p.readContractId, postboxId: p.postboxId, dataRequestId: p.dataRequestId, status: p.status, at: p.at };
}
