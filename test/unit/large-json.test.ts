// The large-body JSON parser: the same values as JSON.parse (and the same refusals),
// except that long escape-free content strings under `variables` stay in the buffer.
import { describe, expect, it } from "@jest/globals";
import { INLINE_VALUE_PREFIX, TooManyValues, parseJsonWithInlineValues } from "../../src/infra/http/large-json.js";

const none = { keys: new Set<string>(), minChars: 1 };
const content = { keys: new Set(["data", "encryptedData"]), minChars: 8 };
const parse = (text: string, opts = none) => parseJsonWithInlineValues(Buffer.from(text, "utf8"), opts);

describe("parseJsonWithInlineValues", () => {
  const docs = [
    `{}`,
    `[]`,
    `{"query":"{ __typename }","variables":{"a":1,"b":[true,false,null],"c":{"d":"e"}}}`,
    ` \n\t{ "a" : [ 1 , -2.5e3 , 0 , 1E-2 , 0.125 ] , "b" : "" } \r\n`,
    `{"esc":"line\\nbreak \\"quoted\\" back\\\\slash \\u00e9 \\ud83d\\ude00 \\/"}`,
    `{"utf8":"héllo wörld 日本 😀"}`,
    `{"__proto__":{"polluted":true},"constructor":{"prototype":1}}`,
    `{"dup":1,"dup":2}`,
    `[{"query":"a","variables":{"data":"QUJDREVGR0hJSktM"}},{"query":"b"}]`,
    `"just a string"`,
    `12345678901234567890`,
    `{"deep":[[[[[[{"x":[1,{"y":null}]}]]]]]]}`,
  ];

  it.each(docs)("parses %j exactly as JSON.parse does", (text) => {
    const { value, values } = parse(text);
    expect(value).toEqual(JSON.parse(text));
    expect(values.size).toBe(0);
  });

  it("keeps __proto__ an own property, never the prototype", () => {
    const { value } = parse(`{"__proto__":{"polluted":true}}`);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value as object)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("skips a UTF-8 byte order mark", () => {
    const buf = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`{"a":1}`)]);
    expect(parseJsonWithInlineValues(buf, none).value).toEqual({ a: 1 });
  });

  const bad = [
    ``,
    `{`,
    `{"a":1,}`,
    `[1,]`,
    `{"a" 1}`,
    `{a:1}`,
    `{"a":01}`,
    `{"a":1.}`,
    `{"a":-}`,
    `{"a":tru}`,
    `{"a":"unterminated}`,
    `{"a":"bad \\x escape"}`,
    `{"a":"raw \u0001 control"}`,
    `{"a":1} trailing`,
    `'single'`,
    `NaN`,
  ];
  it.each(bad)("refuses %j as JSON.parse does", (text) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(() => parse(text)).toThrow();
  });

  it("refuses nesting deeper than it allows, without overflowing the stack", () => {
    expect(() => parse("[".repeat(100_000) + "]".repeat(100_000))).toThrow(/nesting too deep/);
  });

  it("leaves long escape-free content strings under variables in the buffer, filed under a token", () => {
    const text = `{"query":"mutation","variables":{"input":{"postboxId":"pbx_1","data":"QUJDREVGR0hJSktM","fileName":"QUJDREVGR0hJSktM"}}}`;
    const buf = Buffer.from(text);
    const { value, values } = parseJsonWithInlineValues(buf, content);
    const input = (value as any).variables.input;
    expect(input.postboxId).toBe("pbx_1");
    expect(input.fileName).toBe("QUJDREVGR0hJSktM"); // not a content key
    expect(input.data.startsWith(INLINE_VALUE_PREFIX)).toBe(true);
    const slice = values.get(input.data)!;
    expect(slice.toString("latin1")).toBe("QUJDREVGR0hJSktM");
    expect(slice.buffer).toBe(buf.buffer); // a view of the body, not a copy
  });

  it("parses content strings as usual when short, escaped or outside variables", () => {
    const text = `{"data":"QUJDREVGR0hJSktM","variables":{"data":"QUJD","encryptedData":"QUJDREVG\\/R0hJSktM"},"extensions":{"data":"QUJDREVGR0hJSktM"}}`;
    const { value, values } = parseJsonWithInlineValues(Buffer.from(text), content);
    expect(value).toEqual(JSON.parse(text));
    expect(values.size).toBe(0);
  });

  it("stops at maxValues, so that a body of many small values can go to JSON.parse", () => {
    const text = JSON.stringify({ query: "q", variables: { a: Array.from({ length: 50 }, (_, i) => i) } });
    expect(() => parseJsonWithInlineValues(Buffer.from(text), { ...content, maxValues: 40 })).toThrow(TooManyValues);
    expect(parseJsonWithInlineValues(Buffer.from(text), { ...content, maxValues: 60 }).value).toEqual(JSON.parse(text));
  });

  it("finds content strings in every operation of a batch", () => {
    const text = `[{"variables":{"input":{"data":"QUJDREVGR0hJSktM"}}},{"variables":{"input":{"encryptedData":"eyJhbGciOiJSU0EifQ.a.b.c.d"}}}]`;
    const { value, values } = parseJsonWithInlineValues(Buffer.from(text), content);
    const [a, b] = value as any[];
    expect(values.get(a.variables.input.data)!.toString()).toBe("QUJDREVGR0hJSktM");
    expect(values.get(b.variables.input.encryptedData)!.toString()).toBe("eyJhbGciOiJSU0EifQ.a.b.c.d");
  });
});
