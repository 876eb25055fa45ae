// The event types a contract's webhook endpoint receives (see docs/design.md "Webhooks").
export const WEBHOOK_EVENT_TYPES = [
  "postbox.ready",
  "postbox.declined",
  "postbox.expired",
  "postbox.closed",
  "push.delivered",
  "push.purged",
  "data_request.fulfilled",
  "data_request.declined",
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export interface WebhookEvent {
  contractId: string;
  type: WebhookEventType;
  /** Ids and statuses only, never content. Dates should already be ISO strings. */
  data: Record<string, unknown>;
}
