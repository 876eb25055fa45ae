// Named prepared statements with binary parameters, for PGlite (used by its thread,
// pglite.worker.mjs). PGlite's own query() is general but costly for a hot statement
// with large parameters: every call parses and describes the SQL again (four extra
// round trips into PostgreSQL), and sends each array as text, which PGlite escapes
// in JavaScript and PostgreSQL then parses character by character. Here the
// statement is parsed once per connection and each call is one Bind/Describe/
// Execute/Sync message whose arrays are in PostgreSQL's binary format: a length and
// the bytes of each element. Measured on a batch of 12 pushes: about a third less
// of the database thread's time per push.
//
// Plain JavaScript on purpose, like the worker that loads it.

/** Parameter types this encoder writes: array OID, element OID, element encoder. */
const TYPES = {
  text: { oid: 25 },
  "text[]": { oid: 1009, elem: 25 },
  int4: { oid: 23 },
  "int4[]": { oid: 1007, elem: 23 },
  timestamp: { oid: 1114 },
  "timestamp[]": { oid: 1115, elem: 1114 },
};

// PostgreSQL's timestamps count microseconds from 2000-01-01 00:00:00.
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);

/** The binary form of one non-null value of element type `oid`. */
function encodeValue(oid, v) {
  switch (oid) {
    case 25:
      if (typeof v !== "string") throw new TypeError(`expected a string, got ${typeof v}`);
      return Buffer.from(v, "utf8");
    case 23: {
      if (!Number.isInteger(v)) throw new TypeError(`expected an integer, got ${v}`);
      const b = Buffer.allocUnsafe(4);
      b.writeInt32BE(v);
      return b;
    }
    case 1114: {
      // A timestamp without time zone holds the UTC wall time, as Prisma writes it.
      const ms = v instanceof Date ? v.getTime() : Date.parse(v);
      if (!Number.isFinite(ms)) throw new TypeError(`expected a date, got ${v}`);
      const b = Buffer.allocUnsafe(8);
      b.writeBigInt64BE(BigInt(ms - PG_EPOCH_MS) * 1000n);
      return b;
    }
    default:
      throw new TypeError(`unsupported type ${oid}`);
  }
}

/** A one-dimensional array in PostgreSQL's binary format (array_recv). */
function encodeArray(elem, values) {
  if (!Array.isArray(values)) throw new TypeError("expected an array");
  const items = values.map((v) => (v === null || v === undefined ? null : encodeValue(elem, v)));
  let size = 20;
  for (const b of items) size += 4 + (b ? b.length : 0);
  const out = Buffer.allocUnsafe(size);
  let o = out.writeInt32BE(1, 0); // dimensions
  o = out.writeInt32BE(items.includes(null) ? 1 : 0, o);
  o = out.writeInt32BE(elem, o);
  o = out.writeInt32BE(items.length, o);
  o = out.writeInt32BE(1, o); // lower bound
  for (const b of items) {
    if (!b) {
      o = out.writeInt32BE(-1, o);
      continue;
    }
    o = out.writeInt32BE(b.length, o);
    o += b.copy(out, o);
  }
  return out;
}

/** One parameter in binary, or null for SQL NULL. */
export function encodeParam(type, value) {
  const t = TYPES[type];
  if (!t) throw new TypeError(`unsupported parameter type ${type}`);
  if (value === null || value === undefined) return null;
  return t.elem ? encodeArray(t.elem, value) : encodeValue(t.oid, value);
}

const cstring = (s) => Buffer.from(`${s}\0`, "utf8");

/** A frontend message: its type byte, its length, its body. */
function message(type, ...body) {
  const len = body.reduce((n, b) => n + b.length, 4);
  const head = Buffer.allocUnsafe(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(len, 1);
  return [head, ...body];
}

function int16(v) {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(v);
  return b;
}

/** A count, then that many 16-bit values. */
function int16s(values) {
  const b = Buffer.allocUnsafe(2 + 2 * values.length);
  b.writeInt16BE(values.length, 0);
  values.forEach((v, i) => b.writeInt16BE(v, 2 + 2 * i));
  return b;
}

/** Parse (the statement, named, with its parameter types) then Sync. */
export function parseMessage(name, sql, types) {
  const oids = Buffer.allocUnsafe(2 + 4 * types.length);
  oids.writeInt16BE(types.length, 0);
  types.forEach((t, i) => {
    if (!TYPES[t]) throw new TypeError(`unsupported parameter type ${t}`);
    oids.writeInt32BE(TYPES[t].oid, 2 + 4 * i);
  });
  return toBytes([...message("P", cstring(name), cstring(sql), oids), ...message("S")]);
}

/** Bind (every parameter binary, every result column text), Describe, Execute, Sync. */
export function executeMessage(name, types, params) {
  if (params.length !== types.length) throw new TypeError(`expected ${types.length} parameters, got ${params.length}`);
  const values = [];
  params.forEach((p, i) => {
    const b = encodeParam(types[i], p);
    const len = Buffer.allocUnsafe(4);
    len.writeInt32BE(b ? b.length : -1);
    values.push(len);
    if (b) values.push(b);
  });
  return toBytes([
    ...message("B", cstring(""), cstring(name), int16s(types.map(() => 1)), int16(types.length), ...values, int16s([]) /* results: all text */),
    ...message("D", Buffer.from("P\0")),
    ...message("E", cstring(""), Buffer.alloc(4)),
    ...message("S"),
  ]);
}

function toBytes(parts) {
  const b = Buffer.concat(parts);
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/** Rows of an execProtocol result, as objects of text values (null for NULL). */
export function rowsOf(messages) {
  const names = messages.find((m) => m.name === "rowDescription")?.fields.map((f) => f.name) ?? [];
  return messages.filter((m) => m.name === "dataRow").map((m) => Object.fromEntries(names.map((n, i) => [n, m.fields[i]])));
}

// PostgreSQL's "prepared statement does not exist": the connection lost it (DISCARD ALL, DEALLOCATE).
const NO_SUCH_STATEMENT = "26000";

/**
 * Runs `sql` as the prepared statement `name` (parsed on first use) with binary
 * parameters of the given types. Exclusive like PGlite's query(): it waits for an
 * open transaction to finish rather than running inside it.
 */
export function preparedStatements(pglite) {
  const parsed = new Map(); // name -> sql
  const run = async (name, sql, types, params) => {
    if (parsed.get(name) !== sql) {
      if (parsed.has(name)) await pglite.execProtocol(toBytes([...message("C", Buffer.from("S"), cstring(name)), ...message("S")]));
      await pglite.execProtocol(parseMessage(name, sql, types));
      parsed.set(name, sql);
    }
    return rowsOf((await pglite.execProtocol(executeMessage(name, types, params))).messages);
  };
  return (name, sql, types, params) =>
    // The same two locks query() takes (underscored in PGlite, but declared in its types).
    pglite._runExclusiveTransaction(() =>
      pglite._runExclusiveQuery(async () => {
        try {
          return await run(name, sql, types, params);
        } catch (e) {
          if (e?.code !== NO_SUCH_STATEMENT) throw e;
          parsed.delete(name);
          return run(name, sql, types, params);
        }
      }),
    );
}
