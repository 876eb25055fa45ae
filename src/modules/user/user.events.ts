// The USER_FILES pub/sub topic: what the user's app hears live about its postbox
// (the myFilesChanged subscription). Payloads are JSON-safe because with REDIS_URL
// they travel as JSON between instances.
import type { AppPubSub } from "../../infra/pubsub.js";
import type { Logger } from "../../infra/logger.js";

export const USER_FILES_TOPIC = "USER_FILES";

/** Routed per postbox ("USER_FILES:<postboxId>"): a user's stream only wakes for its own postbox. */
export function userTopic(postboxId: string): string {
  return `${USER_FILES_TOPIC}:${postboxId}`;
}

export type FileChangeKind = "ADDED" | "DELIVERED" | "PURGED";

export type UserEventPayload =
  /** A file of the postbox changed. */
  | { kind: "file"; postboxId: string; fileId: string; change: FileChangeKind; at: string }
  /**
   * The postbox's credentials changed (a grant was revoked, the postbox closed or
   * expired): each open stream checks its grant again and ends if it no longer
   * works.
   */
  | { kind: "access"; postboxId: string };

export type UserFileEvent = Extract<UserEventPayload, { kind: "file" }>;

/** A file's changes come in this order; a change at or before where a file stands tells nothing new. */
export const CHANGE_ORDER: Record<FileChangeKind, number> = { ADDED: 0, DELIVERED: 1, PURGED: 2 };

/** Where a file stands: the last change it went through, and when (as a Push row, or a listed file, has it). */
export function currentChange<T>(f: { status: string; receivedAt: T; deliveredAt: T | null; purgedAt: T | null }): { change: FileChangeKind; at: T } {
  if (f.purgedAt !== null) return { change: "PURGED", at: f.purgedAt };
  if (f.status === "DELIVERED" && f.deliveredAt !== null) return { change: "DELIVERED", at: f.deliveredAt };
  return { change: "ADDED", at: f.receivedAt };
}

const CHANGES = new Set<string>(["ADDED", "DELIVERED", "PURGED"]);

/** Checks a payload that came off the bus (possibly from another instance). */
export function asUserEvent(raw: unknown): UserEventPayload | undefined {
  const p = raw as Record<string, unknown> | null;
  if (!p || typeof p !== "object" || typeof p.postboxId !== "string") return undefined;
  if (p.kind === "access") return { kind: "access", postboxId: p.postboxId };
  if (p.kind !== "file" || typeof p.fileId !== "string" || typeof p.change !== "string" || !CHANGES.has(p.change) || typeof p.at !== "string") return undefined;
  return { kind: "file", postboxId: p.postboxId, fileId: p.fileId, change: p.change as FileChangeKind, at: p.at };
}

/** Publishes after the change has committed; a lost live event is recoverable with postboxFiles, so it is logged, not thrown. */
export function publishUserEvent(pubSub: AppPubSub, log: Logger, payload: UserEventPayload): void {
  try {
    pubSub.publish(userTopic(payload.postboxId), payload as unknown as Record<string, unknown>);
  } catch (err) {
    log.warn({ err, postboxId: payload.postboxId }, "could not publish a user event");
  }
}
