// A TCP relay to a test server that can drop every connection and refuse new ones,
// like a network outage between a client and the server (which itself stays up).
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
