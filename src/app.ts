// Composition root: builds the database, repositories, services and resolvers,
// and starts the HTTP/WebSocket server and background tasks. main.ts (the entry
// point), the tests and the benchmarks all start Postbox through createApp().
import "reflect-metadata";
import path from "node:path";
import type { Config } from "./infra/config.js";
import { openDatabase, type Database, type DatabaseOptions } from "./infra/db/database.js";
import { vacuumTask } from "./infra/db/maintenance.js";
import { createAdminRouter } from "./infra/http/admin.js";
import { startHttpServer, type RunningHttpServer } from "./infra/http/server.js";
import { createWebRouter } from "./infra/http/web.js";
import { createLimits } from "./infra/graphql/armor.js";
import { buildAppSchema } from "./infra/graphql/schema.js";
import type { Authenticators } from "./infra/graphql/context.js";
import { createLogger, type Logger } from "./infra/logger.js";
import type { DestinationStream } from "pino";
import { createAppPubSub, type PubSubHandle } from "./infra/pubsub.js";
import { RateLimiter, RedisWindowStore } from "./infra/rate-limit.js";
import { Scheduler, type Task } from "./infra/scheduler.js";
import { loadOrCreateSecret } from "./infra/server-files.js";
import { coalesce } from "./infra/coalesce.js";
import { AuditRepository } from "./modules/audit/audit.repository.js";
import { AuditService } from "./modules/audit/audit.service.js";
import { ApplicationRepository } from "./modules/application/application.repository.js";
import { ApplicationService } from "./modules/application/application.service.js";
import { applicationAdminRoutes } from "./modules/application/application.admin.js";
import { SessionRepository } from "./modules/session/session.repository.js";
import { SessionEnds } from "./modules/session/session.events.js";
import { SessionService } from "./modules/session/session.service.js";
import { SessionResolver } from "./modules/session/session.resolver.js";
import { PostboxRepository } from "./modules/postbox/postbox.repository.js";
import { PostboxService } from "./modules/postbox/postbox.service.js";
import { PostboxResolver, createPostboxSubscriptionResolver } from "./modules/postbox/postbox.resolver.js";
import { UserRepository } from "./modules/user/user.repository.js";
import { UserService } from "./modules/user/user.service.js";
import { UserResolver } from "./modules/user/user.resolver.js";
import { WebhookRepository } from "./modules/webhook/webhook.repository.js";
import { WebhookService } from "./modules/webhook/webhook.service.js";
import { WebhookSender } from "./modules/webhook/webhook.sender.js";
import { WebhookDispatcher } from "./modules/webhook/webhook.worker.js";
import { WebhookResolver } from "./modules/webhook/webhook.resolver.js";
import { webhookAdminRoutes } from "./modules/webhook/webhook.admin.js";
import { PushRepository } from "./modules/push/push.repository.js";
import { jweThread } from "./modules/push/jwe.thread.js";
import { UserFilesService } from "./modules/push/push.files.service.js";
import { PushService } from "./modules/push/push.service.js";
import { fileDownloadRouter } from "./modules/push/push.download.js";
import { pushRefusalAudit } from "./modules/push/push.plugin.js";
import { PushResolver, UserFilesResolver, createPushSubscriptionResolver } from "./modules/push/push.resolver.js";
import { AuditResolver } from "./modules/audit/audit.resolver.js";
import { auditAdminRoutes } from "./modules/audit/audit.admin.js";
import { DataRequestRepository } from "./modules/datarequest/datarequest.repository.js";
import { DataRequestService } from "./modules/datarequest/datarequest.service.js";
import { DataRequestResolver, createDataRequestSubscriptionResolver } from "./modules/datarequest/datarequest.resolver.js";

export interface AppOptions {
  /** Test hook: start the embedded database from a dump of a migrated one. */
  loadDataDir?: Blob;
  /** Test hook: where logs go (default stdout). */
  logDestination?: DestinationStream;
  /** Start background tasks (default true). */
  scheduler?: boolean;
  /** Test hook: the embedded database thread's script and reopen delay (tests run it on a failing disk). */
  dbThread?: DatabaseOptions["thread"];
}

export interface App {
  url: string;
  config: Config;
  db: Database;
  log: Logger;
  services: Services;
  scheduler: Scheduler;
  /** Queries and mutations running now, on both transports (stop waits for them). */
  operationsInFlight(): number;
  stop(): Promise<void>;
}

export interface Services {
  audit: AuditService;
  applications: ApplicationService;
  sessions: SessionService;
  webhooks: WebhookService;
  postboxes: PostboxService;
  users: UserService;
  pushes: PushService;
  /** The user's side of pushes: files, fetches, acknowledgements. */
  files: UserFilesService;
  dataRequests: DataRequestService;
}

/** Wires the modules together. Separate from startup so the schema can be emitted without a server. */
export function wire(config: Config, db: Database, pubsub: PubSubHandle, log: Logger) {
  const prisma = db.prisma;
  const pubSub = pubsub.pubSub;
  // With Redis the limits hold across instances (see infra/rate-limit.ts).
  const limiter = new RateLimiter(config.RATE_LIMIT_PER_MINUTE, pubsub.commands && new RedisWindowStore(pubsub.commands), log);

  // Services, in dependency order. Repositories are the only Prisma users.
  const audit = new AuditService(new AuditRepository(prisma));
  // Ends open subscriptions with their session (expiry, endSession, application disabled), across instances.
  const sessionRepo = new SessionRepository(prisma);
  // `sessions` is declared below; SessionEnds asks it only once streams open.
  const sessionEnds: SessionEnds = new SessionEnds(pubSub, log, (id): Promise<boolean> => sessions.isLive(id));
  const appRepo = new ApplicationRepository(prisma);
  const applications = new ApplicationService(appRepo, audit, config, sessionEnds, sessionRepo);
  const sessions = new SessionService(sessionRepo, appRepo, audit, config, sessionEnds);
  const webhookRepo = new WebhookRepository(prisma);
  const webhookSender = new WebhookSender({ timeoutMs: config.WEBHOOK_TIMEOUT, allowPrivate: config.ALLOW_PRIVATE_URLS, userAgent: "Postbox-Webhooks/1.0" });
  const webhookDispatcher = new WebhookDispatcher(webhookRepo, webhookSender, audit, log, { concurrency: 8, perEndpoint: 2, lockMs: config.WEBHOOK_TIMEOUT + 60_000, refillMs: config.SWEEP_INTERVAL });
  const webhooks = new WebhookService(webhookRepo, audit, webhookDispatcher, config);
  const users = new UserService(new UserRepository(prisma), audit, config, pubSub, log);
  const postboxes = new PostboxService({ repo: new PostboxRepository(prisma), audit, users, webhooks, pubSub, config, log, sessionEnds });
  // SERVER_SECRET keys the idempotency fingerprints and seals key challenges (createApp fills it in when unset).
  const pushRepo = new PushRepository(prisma, db.sql);
  const pushes = new PushService(pushRepo, audit, webhooks, pubSub, config, config.SERVER_SECRET, log, sessionEnds);
  const files = new UserFilesService(pushRepo, audit, webhooks, pubSub, config, log);
  // Data sent back by users, encrypted to the application's READ contract key.
  const dataRequests = new DataRequestService(new DataRequestRepository(prisma), appRepo, audit, webhooks, pubSub, config, log, sessionEnds);

  const auth: Authenticators = {
    // Concurrent requests with one session key share one lookup (see infra/coalesce.ts).
    session: coalesce((key) => sessions.authenticate(key)),
    user: (token) => users.authenticate(token),
  };

  const resolvers: object[] = [
    new SessionResolver(sessions, limiter),
    new PostboxResolver(postboxes, limiter),
    createPostboxSubscriptionResolver(postboxes),
    new UserResolver(users, postboxes, limiter),
    new WebhookResolver(webhooks),
    new PushResolver(pushes),
    new UserFilesResolver(files),
    createPushSubscriptionResolver(pushes, files, users),
    new AuditResolver(audit),
    new DataRequestResolver(dataRequests),
    createDataRequestSubscriptionResolver(dataRequests),
  ];

  const tasks: Task[] = [
    { name: "sessions.sweep", run: (now) => sessions.sweep(now) },
    { name: "postboxes.expire", run: (now) => postboxes.sweep(now) },
    { name: "users.revoke", run: (now) => users.sweep(now) },
    { name: "webhooks.deliver", run: () => webhooks.deliverDue() },
    { name: "webhooks.prune", run: (now) => webhooks.prune(now) },
    { name: "push.retention", run: (now) => pushes.retention(now) },
    { name: "dataRequests.sweep", run: (now) => dataRequests.sweep(now) },
    { name: "audit.prune", run: (now) => audit.prune(now, config.AUDIT_RETENTION) },
  ];
  // The embedded database has no autovacuum: deleted rows (purged content too) stay in its files until this.
  const vacuum = vacuumTask(db, log);
  if (vacuum) tasks.push(vacuum);

  const adminRoutes = [applicationAdminRoutes(applications), webhookAdminRoutes(webhooks), auditAdminRoutes(audit, config.AUDIT_RETENTION)];
  // Every pushData attempt is audited, also those GraphQL refuses before the resolver.
  const refusalListeners = [pushRefusalAudit(pushes)];
  const services: Services = { audit, applications, sessions, webhooks, postboxes, users, pushes, files, dataRequests };
  return { resolvers, tasks, adminRoutes, refusalListeners, auth, services };
}

export async function createApp(config: Config, opts: AppOptions = {}): Promise<App> {
  const log = createLogger(config.LOG_LEVEL, opts.logDestination);
  const db = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: path.join(config.DATA_DIR, "db"),
    poolSize: config.DATABASE_POOL_SIZE,
    sync: config.EMBEDDED_DB_SYNC,
    loadDataDir: opts.loadDataDir,
    log,
    thread: opts.dbThread,
  });
  let pubsub: PubSubHandle | undefined;
  let http: RunningHttpServer | undefined;
  // The encryption thread is the process's; it stops once no app in the process uses it.
  const releaseJweThread = jweThread.retain();
  try {
    const migrated = await db.migrate();
    if (migrated.applied.length) log.info({ applied: migrated.applied }, "database migrated");

    const adminToken = config.ADMIN_TOKEN ?? (await loadOrCreateSecret(config.DATA_DIR, "admin-token", "pba", log));
    config.SERVER_SECRET ??= await loadOrCreateSecret(config.DATA_DIR, "server-secret", "pbk", log);
    pubsub = createAppPubSub(config.REDIS_URL, log);
    const wired = wire(config, db, pubsub, log);
    const schema = await buildAppSchema(wired.resolvers, pubsub.pubSub);
    http = await startHttpServer({
      config,
      schema,
      limits: createLimits(config),
      auth: wired.auth,
      log,
      ready: () => db.ping(),
      adminRouter: createAdminRouter(adminToken, log, wired.adminRoutes),
      refusalListeners: wired.refusalListeners,
      mounts: [
        { path: "/files", handler: fileDownloadRouter(wired.services.files, wired.auth, log) },
        { path: "/", handler: createWebRouter(log, config) },
      ],
    });
    // With PORT=0 (tests) the public URL is known only now.
    if (config.PORT === 0 && !process.env.PUBLIC_URL) config.PUBLIC_URL = http.url;

    const scheduler = new Scheduler(wired.tasks, config.SWEEP_INTERVAL, log);
    if (opts.scheduler !== false) scheduler.start();
    log.info({ url: http.url, database: db.kind, pubsub: config.REDIS_URL ? "redis" : "memory" }, "postbox listening");

    const running = http;
    const ps = pubsub;
    let stopping: Promise<void> | undefined;
    return {
      url: running.url,
      config,
      db,
      log,
      services: wired.services,
      scheduler,
      operationsInFlight: () => running.operationsInFlight(),
      stop() {
        stopping ??= (async () => {
          // Webhooks first: aborting sends in flight keeps a slow receiver from holding up the scheduler's stop.
          await wired.services.webhooks.stop();
          await scheduler.stop();
          await running.stop();
          await releaseJweThread(); // after the HTTP server: no request is left to encrypt
          await ps.close();
          await db.close();
          log.info("postbox stopped");
        })();
        return stopping;
      },
    };
  } catch (e) {
    await http?.stop().catch(() => {});
    await releaseJweThread().catch(() => {});
    await pubsub?.close().catch(() => {});
    await db.close().catch(() => {});
    throw e;
  }
}
