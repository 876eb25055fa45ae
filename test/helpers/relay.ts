// A TCP relay to a test server that can drop every connection and refuse new ones,
// like a network outage between a client and the server (which itself stays up);
// and an HTTP proxy that loses the answers to chosen requests (answerDropper).
import http from "node:http";
import net from "node:net";

export interface Relay {
  /** http://127.0.0.1:<relay port>: the server, reached through the relay. */
  url: string;
  /** Drops every open connection and refuses new ones until up(). */
  down(): void;
  up(): void;
  close(): Promise<void>;
}

export async function relay(port: number): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  let down = false;
  const server = net.createServer((inbound) => {
    if (down) return void inbound.destroy();
    const outbound = net.connect(port, "127.0.0.1");
    for (const [a, b] of [
      [inbound, outbound],
      [outbound, inbound],
    ] as const) {
      sockets.add(a);
      a.pipe(b);
      a.on("error", () => b.destroy());
      a.on("close", () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    down() {
      down = true;
      for (const s of sockets) s.destroy();
    },
    up() {
      down = false;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface AnswerDropper {
  /** http://127.0.0.1:<port>: the server, reached through a proxy that loses some answers. */
  url: string;
  /** How many answers were dropped so far. */
  dropped(): number;
  close(): Promise<void>;
}

/**
 * An HTTP proxy to a test server that forwards every request but, for those `drop`
 * picks, destroys the client's socket once the server has answered: the server carried
 * the request out, and the client never learns it (it sees UND_ERR_SOCKET).
 */
export async function answerDropper(port: number, drop: (req: http.IncomingMessage, body: string) => boolean): Promise<AnswerDropper> {
  let dropped = 0;
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const upstream = http.request({ host: "127.0.0.1", port, method: req.method, path: req.url, headers: req.headers }, async (answer) => {
      const parts: Buffer[] = [];
      for await (const c of answer) parts.push(c as Buffer);
      if (drop(req, body.toString("utf8"))) {
        dropped++;
        req.socket.destroy();
        return;
      }
      const headers = { ...answer.headers };
      delete headers["transfer-encoding"];
      res.writeHead(answer.statusCode ?? 502, { ...headers, "content-length": Buffer.concat(parts).length });
      res.end(Buffer.concat(parts));
    });
    upstream.on("error", () => req.socket.destroy());
    upstream.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    dropped: () => dropped,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
