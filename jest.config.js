// Two projects: the same suite runs against the embedded database (PGlite) and
// against PostgreSQL (TEST_DATABASE_URL, default the local "test" database).
const swc = [
  "@swc/jest",
  {
    jsc: {
      target: "es2022",
      parser: { syntax: "typescript", decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
    },
    module: { type: "es6" },
  },
];

const base = {
  extensionsToTreatAsEsm: [".ts"],
  moduleNameMapper: { "^(\\.{1,2}/.*)\\.js$": "$1" },
  transform: { "^.+\\.ts$": swc },
  testEnvironment: "node",
  setupFiles: ["<rootDir>/test/setup-env.ts"],
};

export default {
  testTimeout: 60_000,
  // Jest's default on a 2-core machine is one worker. Integration files spend much of
  // their time waiting (network cut-offs, retries, child processes, the browser), so two
  // at once finish the suite about a quarter sooner there (536 s → 399–408 s, measured).
  maxWorkers: 2,
  // A worker's event loop is empty within 2 ms of jest's end message, but tearing down its
  // 0.7–0.8 GB heap took 1.3–1.5 s on a loaded machine (measured); the default 500 ms grace
  // then kills it and reports "a worker process has failed to exit gracefully". The heap is
  // that large because in ESM mode every test file's vm context stays alive until the worker
  // ends, with trivial test files too (upstream: jestjs/jest#14605, nodejs/node#63186).
  workerGracefulExitTimeout: 5_000,
  projects: [
    { ...base, displayName: "unit", testMatch: ["<rootDir>/test/unit/**/*.test.ts"] },
    {
      ...base,
      displayName: "pglite",
      testMatch: ["<rootDir>/test/integration/**/*.test.ts"],
      // Two server processes cannot share an embedded database, and it runs one transaction
      // at a time (no races to test): those tests run on PostgreSQL only.
      testPathIgnorePatterns: ["/node_modules/", "<rootDir>/test/integration/multi-instance.test.ts", "<rootDir>/test/integration/races.test.ts"],
      globalSetup: "<rootDir>/test/global-setup.ts",
      setupFiles: [...base.setupFiles, "<rootDir>/test/setup-pglite.ts"],
    },
    {
      ...base,
      displayName: "postgres",
      testMatch: ["<rootDir>/test/integration/**/*.test.ts"],
      // The web app in Chromium does not depend on the database: one run (pglite) is enough.
      // embedded-db-failure tests the embedded database's own thread.
      testPathIgnorePatterns: ["/node_modules/", "<rootDir>/test/integration/browser.test.ts", "<rootDir>/test/integration/embedded-db-failure.test.ts"],
      setupFiles: [...base.setupFiles, "<rootDir>/test/setup-postgres.ts"],
    },
  ],
};
