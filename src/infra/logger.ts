// JSON logs (pino). Secrets never reach a log line: request headers are not logged,
// and the redact list below is a second line of defence for fields that might.
import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "postbox" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          "authorization",
          "*.authorization",
          "headers.authorization",
          "*.headers.authorization",
          "variables",
          "*.variables",
          "secret",
          "*.secret",
          "token",
          "*.token",
        ],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
