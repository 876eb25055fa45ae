import { Field, ID, Int, ObjectType, registerEnumType } from "type-graphql";
import { ConnectionType } from "../../infra/graphql/pagination.js";

export enum WebhookDeliveryStatus {
  PENDING = "PENDING",
  SUCCEEDED = "SUCCEEDED",
  FAILED = "FAILED",
}
registerEnumType(WebhookDeliveryStatus, {
  name: "WebhookDeliveryStatus",
  description: "PENDING: not delivered yet (being retried); SUCCEEDED: the endpoint answered 2xx; FAILED: all attempts failed, or the endpoint answered 410.",
});

@ObjectType({ description: "The contract's webhook endpoint registration, returned once with its signing secret." })
export class WebhookRegistration {
  @Field()
  url!: string;

  @Field({ description: "whsec_…: the Standard Webhooks signing secret. Shown only in this response; store it now." })
  secret!: string;

  @Field()
  createdAt!: Date;

  @Field(() => Date, {
    nullable: true,
    description: "After rotateWebhookSecret: until this time every delivery carries a second signature, made with the previous secret, so your receiver can switch secrets without rejecting any.",
  })
  previousSecretValidUntil?: Date | null;
}

@ObjectType({ description: "The contract's webhook endpoint (the secret is never shown again)." })
export class WebhookEndpoint {
  @Field()
  url!: string;

  @Field({ description: "When this URL and secret were registered." })
  createdAt!: Date;

  @Field(() => Date, { nullable: true, description: "Set when deliveries stopped (the endpoint answered 410 Gone); register again with setWebhook to resume." })
  disabledAt!: Date | null;

  @Field(() => String, { nullable: true })
  disabledReason!: string | null;
}

@ObjectType({ description: "One try at delivering a webhook." })
export class WebhookAttempt {
  @Field(() => Int, { description: "1 for the first try." })
  number!: number;

  @Field()
  at!: Date;

  @Field(() => Int, { nullable: true, description: "The endpoint's HTTP status; null when it did not answer." })
  statusCode!: number | null;

  @Field(() => String, { nullable: true, description: "Why the try failed (timeout, connection error, non-2xx status)." })
  error!: string | null;

  @Field(() => Int)
  durationMs!: number;
}

@ObjectType({ description: "One event sent (or being sent) to the contract's webhook endpoint." })
export class WebhookDelivery {
  @Field(() => ID, { description: "msg_…: also the `webhook-id` header, stable across retries (use it to deduplicate)." })
  id!: string;

  @Field({ description: "postbox.ready, postbox.declined, postbox.expired, postbox.closed, push.delivered, push.purged, data_request.fulfilled or data_request.declined." })
  eventType!: string;

  @Field(() => WebhookDeliveryStatus)
  status!: WebhookDeliveryStatus;

  @Field({ description: "The exact JSON body that is signed and sent." })
  payload!: string;

  @Field()
  createdAt!: Date;

  @Field(() => Date, { nullable: true, description: "When the next try is due; null once SUCCEEDED or FAILED." })
  nextAttemptAt!: Date | null;

  @Field(() => Date, { nullable: true })
  completedAt!: Date | null;

  @Field(() => [WebhookAttempt], { description: "Tries so far, oldest first." })
  attempts!: WebhookAttempt[];
}

@ObjectType()
export class WebhookDeliveryConnection extends ConnectionType(WebhookDelivery, "WebhookDelivery") {}
