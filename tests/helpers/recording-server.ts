import http, { type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One request a recording server received, its body as text. */
export interface Recorded {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * A local HTTP server standing in for someone else's (a payment provider, a
 * merchant's webhook receiver): it records every request and counts every
 * connection, and a subclass decides the answer (`respond`).
 */
export class RecordingServer {
  readonly requests: Recorded[] = [];
  connections = 0;
  readonly #sockets = new Set<Socket>();
  protected constructor(readonly server: http.Server) {}

  /** Starts a server of the subclass `make` builds, on 127.0.0.1 (port 0: any free one). */
  protected static async listen<T extends RecordingServer>(make: (server: http.Server) => T, port = 0): Promise<T> {
    const server = http.createServer();
    const rs = make(server);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const rec = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
        rs.requests.push(rec);
        rs.respond(rec, res);
      });
    });
    server.on('connection', (s: Socket) => {
      rs.connections++;
      rs.#sockets.add(s);
      s.on('close', () => rs.#sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    return rs;
  }

  protected respond(_rec: Recorded, res: ServerResponse): void {
    res.end();
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  url(path = ''): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Forgets what was recorded and drops kept-alive sockets, so a new connection shows as one. */
  clear(): void {
    this.requests.length = 0;
    this.connections = 0;
    for (const s of this.#sockets) s.destroy();
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
