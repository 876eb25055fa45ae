// Named prepared statements with binary parameters, for PGlite (used by its thread,
// pglite.worker.mjs); binaryParam gives the same parameters to node-postgres. PGlite's
// own query() is general but costly for a hot statement with large parameters: every
// call parses and describes the SQL again (four extra round trips into PostgreSQL),
// and sends each array as text, which PGlite escapes in JavaScript and PostgreSQL
// then parses character by character. Here the
// statement is parsed once per connection and each call is one Bind/Describe/
// Execute/Sync message whose arrays are in PostgreSQL's binary format: a length and
// the bytes of each element. Measured on a batch of 12 pushes: about a third less
// of the database thread's time per push.
//
// Plain JavaScript on purpose, like the worker that loads it.

/** The parameter types written here: each one's OID and, for an array, its element's. */
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

// Each parameter is measured first, then written straight into the one buffer that
// holds the whole message, so a large ciphertext is copied once. (Built in buffers of
// their own and then joined, a 10 MiB push's was held three times over.)

/** Bytes of one non-null value of element type `oid` in binary. */
function valueSize(oid, v) {
  if (oid !== 25) return oid === 23 ? 4 : 8;
  if (typeof v !== "string") throw new TypeError(`expected a string, got ${typeof v}`);
  return Buffer.byteLength(v, "utf8");
}

/** Writes one non-null value; throws on a value of the wrong kind (the message is then never sent). */
function writeValue(oid, v, buf, o) {
  if (oid === 25) return o + buf.write(v, o, "utf8");
  if (oid === 23) {
    if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) throw new TypeError(`expected an integer, got ${v}`);
    return buf.writeInt32BE(v, o);
  }
  // A timestamp without time zone holds the UTC wall time, as Prisma writes it.
  const ms = v instanceof Date ? v.getTime() : Date.parse(v);
  if (!Number.isFinite(ms)) throw new TypeError(`expected a date, got ${v}`);
  return buf.writeBigInt64BE(BigInt(ms - PG_EPOCH_MS) * 1000n, o);
}

const isNull = (v) => v === null || v === undefined;

function typeOf(type) {
  const t = TYPES[type];
  if (!t) throw new TypeError(`unsupported parameter type ${type}`);
  return t;
}

/** Bytes of one parameter in binary, or -1 for SQL NULL. */
function paramSize(type, value) {
  const t = typeOf(type);
  if (isNull(value)) return -1;
  if (!t.elem) return valueSize(t.oid, value);
  if (!Array.isArray(value)) throw new TypeError("expected an array");
  let size = 20; // a one-dimensional array's header (array_recv)
  for (const v of value) size += 4 + (isNull(v) ? 0 : valueSize(t.elem, v));
  return size;
}

function writeParam(type, value, buf, o) {
  const t = TYPES[type];
  if (!t.elem) return writeValue(t.oid, value, buf, o);
  o = buf.writeInt32BE(1, o); // dimensions
  o = buf.writeInt32BE(value.some(isNull) ? 1 : 0, o);
  o = buf.writeInt32BE(t.elem, o);
  o = buf.writeInt32BE(value.length, o);
  o = buf.writeInt32BE(1, o); // lower bound
  for (const v of value) {
    if (isNull(v)) {
      o = buf.writeInt32BE(-1, o);
      continue;
    }
    const at = o + 4;
    const end = writeValue(t.elem, v, buf, at);
    buf.writeInt32BE(end - at, o);
    o = end;
  }
  return o;
}

/**
 * One parameter in PostgreSQL's binary format, or null for SQL NULL: for node-postgres,
 * which sends a Buffer parameter as binary (PostgreSQL then reads an array with
 * array_recv instead of parsing its text, and nothing escapes it on this side).
 */
export function binaryParam(type, value) {
  const size = paramSize(type, value);
  if (size < 0) return null;
  const buf = Buffer.allocUnsafe(size);
  const end = writeParam(type, value, buf, 0);
  if (end !== size) throw new Error(`parameter length ${end} != ${size}`);
  return buf;
}

/** Parse (the statement, named, with its parameter types) then Sync. */
function parseMessage(name, sql, types) {
  const oids = types.map((t) => typeOf(t).oid);
  const nameBytes = Buffer.byteLength(name, "utf8");
  const sqlBytes = Buffer.byteLength(sql, "utf8");
  const parseLen = 4 + nameBytes + 1 + sqlBytes + 1 + 2 + 4 * oids.length;
  const buf = Buffer.allocUnsafe(1 + parseLen + 5);
  let o = header(buf, 0, "P", parseLen);
  o = cstring(buf, name, o);
  o = cstring(buf, sql, o);
  o = buf.writeInt16BE(oids.length, o);
  for (const oid of oids) o = buf.writeInt32BE(oid, o);
  sync(buf, o);
  return bytes(buf);
}

/** Bind (every parameter binary, every result column text), Describe, Execute, Sync, in one buffer. */
function executeMessage(name, types, params) {
  if (params.length !== types.length) throw new TypeError(`expected ${types.length} parameters, got ${params.length}`);
  const sizes = params.map((p, i) => paramSize(types[i], p));
  const nameBytes = Buffer.byteLength(name, "utf8");
  const n = types.length;
  const bindLen = 4 + 1 /* portal "" */ + nameBytes + 1 + 2 + 2 * n + 2 + sizes.reduce((sum, size) => sum + 4 + Math.max(size, 0), 0) + 2;
  const buf = Buffer.allocUnsafe(1 + bindLen + 7 /* Describe */ + 10 /* Execute */ + 5 /* Sync */);
  let o = header(buf, 0, "B", bindLen);
  o = cstring(buf, "", o);
  o = cstring(buf, name, o);
  o = buf.writeInt16BE(n, o);
  for (let i = 0; i < n; i++) o = buf.writeInt16BE(1, o); // binary
  o = buf.writeInt16BE(n, o);
  params.forEach((p, i) => {
    o = buf.writeInt32BE(sizes[i], o);
    if (sizes[i] >= 0) o = writeParam(types[i], p, buf, o);
  });
  o = buf.writeInt16BE(0, o); // result columns: all text
  o = header(buf, o, "D", 6);
  o = buf.writeUInt8(0x50 /* P(ortal) */, o);
  o = cstring(buf, "", o); // portal "": its result columns
  o = header(buf, o, "E", 9);
  o = cstring(buf, "", o); // portal ""
  o = buf.writeInt32BE(0, o); // all rows
  o = sync(buf, o);
  if (o !== buf.length) throw new Error(`message length ${o} != ${buf.length}`);
  return bytes(buf);
}

/** Close (the statement `name`) then Sync. */
function closeMessage(name) {
  const len = 4 + 1 + Buffer.byteLength(name, "utf8") + 1;
  const buf = Buffer.allocUnsafe(1 + len + 5);
  let o = header(buf, 0, "C", len);
  o = buf.writeUInt8(0x53 /* S(tatement) */, o);
  o = cstring(buf, name, o);
  sync(buf, o);
  return bytes(buf);
}

/** A message's type byte and its length (which counts itself, not the type byte). */
function header(buf, o, type, len) {
  o = buf.writeUInt8(type.charCodeAt(0), o);
  return buf.writeInt32BE(len, o);
}

function cstring(buf, s, o) {
  o += buf.write(s, o, "utf8");
  return buf.writeUInt8(0, o);
}

const sync = (buf, o) => header(buf, o, "S", 4);

const bytes = (b) => new Uint8Array(b.buffer, b.byteOffset, b.length);

/** Rows of an execProtocol result, as objects of text values (null for NULL). */
function rowsOf(messages) {
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
  const parsed = new Map(); // name -> the SQL and parameter types it was prepared with
  const run = async (name, sql, types, params) => {
    const as = `${types.join(",")}\n${sql}`;
    if (parsed.get(name) !== as) {
      if (parsed.has(name)) await pglite.execProtocol(closeMessage(name));
      await pglite.execProtocol(parseMessage(name, sql, types));
      parsed.set(name, as);
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
