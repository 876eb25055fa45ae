// The one place where Prisma's errors become API errors.
import { AppError, ErrorCode } from "../errors.js";

interface PrismaLikeError {
  code?: string;
  meta?: Record<string, unknown>;
  name?: string;
}

function prismaCode(e: unknown): string | undefined {
  const err = e as PrismaLikeError | null;
  return err && typeof err === "object" && typeof err.code === "string" && /^P\d{4}$/.test(err.code) ? err.code : undefined;
}

export function isUniqueViolation(e: unknown): boolean {
  if (prismaCode(e) === "P2002") return true;
  // From the driver itself (Database.sql): PostgreSQL's SQLSTATE unique_violation.
  if ((e as { code?: unknown } | null)?.code === "23505") return true;
  // Raw queries ($queryRaw) report it as P2010 with the driver adapter's error attached.
  const cause = (e as { meta?: { driverAdapterError?: { cause?: { kind?: string } } } }).meta?.driverAdapterError?.cause;
  return prismaCode(e) === "P2010" && cause?.kind === "UniqueConstraintViolation";
}

/** Maps known Prisma errors; returns other errors unchanged (they are masked later). */
export function mapPrismaError(e: unknown): unknown {
  switch (prismaCode(e)) {
    case "P2002":
      return new AppError(ErrorCode.CONFLICT, "That already exists.");
    case "P2025":
      return new AppError(ErrorCode.NOT_FOUND, "The record was not found.");
    case "P2034":
      return new AppError(ErrorCode.CONFLICT, "A concurrent change got there first; retry the request.");
    default:
      return e;
  }
}
