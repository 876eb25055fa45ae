// Composition root: builds the database, repositories, services and resolvers,
// and starts the HTTP/WebSocket server and background tasks. main.ts (the entry
// point), the tests and the benchmarks all start Postbox through createApp().
import "reflect-metadata";
import path from "node:path";
import type { Config } from "./infra/config.js";
import { openDatabase, type Database } from "./infra/db/database.js";
import { createAdminRouter } from "./infra/http/admin.js";
import { startHttpServer, type RunningHttpServer } from "./infra/http/server.js";
import { createLimits } from "./infra/graphql/armor.js";
import { buildAppSchema } from "./infra/graphql/schema.js";
import type { Authenticators } from "./infra/graphql/context.js";
import { createLogger, type Logger } from "./infra/logger.js";
import type { DestinationStream } from "pino";
import { createAppPubSub, type PubSubHandle } from "./infra/pubsub.js";
import { RateLimiter } from "./infra/rate-limit.js";
import { Scheduler, type Task } from "./infra/scheduler.js";
import { loadOrCreateSecret } from "./infra/server-files.js";
import { unauthenticated } from "./infra/errors.js";
import { AuditRepository } from "./modules/audit/audit.repository.js";
import { AuditService } from "./modules/audit/audit.service.js";
import { ApplicationRepository } from "./modules/application/application.repository.js";
import { ApplicationService } from "./modules/application/application.service.js";
import { applicationAdminRoutes } from "./modules/application/application.admin.js";
import { SessionRepository } from "./modules/session/session.repository.js";
import { SessionService } from "./modules/session/session.service.js";
import { SessionResolver } from "./modules/session/session.resolver.js";

export interface AppOptions {
  /** Test hook: start the embedded database from a dump of a migrated one. */
  loadDataDir?: Blob;
  /** Test hook: where logs go (default stdout). */
  logDestination?: DestinationStream;
  /** Start background tasks (default true). */
  scheduler?: boolean;
}

export interface App {
  url: string;
  config: Config;
  db: Database;
  log: Logger;
  services: Services;
  scheduler: Scheduler;
  stop(): Promise<void>;
}

export interface Services {
  audit: AuditService;
  applications: ApplicationService;
  sessions: SessionService;
}

/** Wires the modules together. Separate from startup so the schema can be emitted without a server. */
export function wire(config: Config, db: Database, pubsub: PubSubHandle, log: Logger) {
  const prisma = db.prisma;
  const limiter = new RateLimiter(config.RATE_LIMIT_PER_MINUTE);

  const audit = new AuditService(new AuditRepository(prisma));
  const appRepo = new ApplicationRepository(prisma);
  const applications = new ApplicationService(appRepo, audit, config);
  const sessions = new SessionService(new SessionRepository(prisma), appRepo, audit, config);

  const auth: Authenticators = {
    session: (key) => sessions.authenticate(key),
    user: async () => {
      throw unauthenticated("User access tokens are not accepted by this server yet.");
    },
  };

  const resolvers: object[] = [new SessionResolver(sessions, limiter)];
  const tasks: Task[] = [{ name: "sessions.sweep", run: (now) => sessions.sweep(now) }];
  const adminRoutes = [applicationAdminRoutes(applications)];
  const services: Services = { audit, applications, sessions };
  void log;
  void pubsub;
  return { resolvers, tasks, adminRoutes, auth, services };
}

export async function createApp(config: Config, opts: AppOptions = {}): Promise<App> {
  const log = createLogger(config.LOG_LEVEL, opts.logDestination);
  const db = await openDatabase({
    url: config.DATABASE_URL,
    dataDir: path.join(config.DATA_DIR, "db"),
    poolSize: config.DATABASE_POOL_SIZE,
    loadDataDir: opts.loadDataDir,
  });
  let pubsub: PubSubHandle | undefined;
  let http: RunningHttpServer | undefined;
  try {
    const migrated = await db.migrate();
    if (migrated.applied.length) log.info({ applied: migrated.applied }, "database migrated");

    const adminToken = config.ADMIN_TOKEN ?? (await loadOrCreateSecret(config.DATA_DIR, "admin-token", "pba"));
    pubsub = createAppPubSub(config.REDIS_URL);
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
      stop() {
        stopping ??= (async () => {
          await scheduler.stop();
          await running.stop();
          await ps.close();
          await db.close();
          log.info("postbox stopped");
        })();
        return stopping;
      },
    };
  } catch (e) {
    await http?.stop().catch(() => {});
    await pubsub?.close().catch(() => {});
    await db.close().catch(() => {});
    throw e;
  }
}
