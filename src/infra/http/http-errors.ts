// Errors answered outside GraphQL execution (body parsing, multipart, the download
// route) in GraphQL's response shape, so clients read them the same way.
import type { Response } from "express";

export function sendError(res: Response, status: number, code: string, message: string, extensions: Record<string, unknown> = {}): void {
  res.status(status).json({ errors: [{ message, extensions: { ...extensions, code } }] });
}

export function bodyTooLargeMessage(limit: number): string {
  return `The request body is larger than this server accepts (${limit} bytes; MAX_PUSH_BYTES sets it).`;
}
