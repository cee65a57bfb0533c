// The wire format of a Citadel gate (docs/protocol.md §2): one WebSocket
// binary message is a big-endian u16 message ID followed by the msgpack
// array [seq, body], body being the message as a msgpack map keyed by its
// Go field names. The generated message classes (messages.ts) convert
// their fields with the helpers in `wire`, so that what is sent is what
// the server's Go codec expects and what is received is checked.

import { Decoder, Encoder } from "@msgpack/msgpack";

/**
 * The constructor argument of a message class: any of its fields.
 * 64-bit integer fields are bigint (`5n`, `BigInt(x)`).
 */
export type Fields<T> = {
  [K in keyof T as T[K] extends (...args: never[]) => unknown ? never : K]?: T[K];
};

/** A message: an instance of a generated class. */
export interface Message {
  toWire(): Record<string, unknown>;
}

/** A generated message class: its ID, its name and how to decode it. */
export interface MessageClass<T extends Message = Message> {
  readonly id: number;
  readonly messageName: string;
  fromWire(v: unknown): T;
  new (...args: never[]): T;
}

/** Something the server sent does not fit the message schema. */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WireError";
  }
}

function fail(where: string, want: string, v: unknown): never {
  const got = v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
  throw new WireError(`${where}: want ${want}, got ${got}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}

const MAX_U64 = (1n << 64n) - 1n;
const MIN_I64 = -(1n << 63n);
const MAX_I64 = (1n << 63n) - 1n;

function toInteger(where: string, v: unknown, signed: boolean, bits: 32 | 64): number | bigint {
  let n: bigint;
  if (typeof v === "bigint") n = v;
  else if (typeof v === "number" && Number.isInteger(v)) n = BigInt(v);
  else return fail(where, "an integer", v);
  const [lo, hi] = bits === 64 ? (signed ? [MIN_I64, MAX_I64] : [0n, MAX_U64]) : signed ? [-(1n << 31n), (1n << 31n) - 1n] : [0n, (1n << 32n) - 1n];
  if (n < lo || n > hi) throw new WireError(`${where}: ${n} is out of range for a${signed ? "n int" : " uint"}${bits}`);
  return n;
}

/** Converters the generated classes use; not needed by game code. */
export const wire = {
  /** Checks that a message body is a map (nil counts as empty). */
  object(v: unknown, where: string): Record<string, unknown> {
    if (v === null || v === undefined) return {};
    if (!isObject(v)) fail(where, "a map", v);
    return v;
  },
  /** Decoding: check and convert a decoded field value. */
  get: {
    bool: (v: unknown, where: string): boolean => (typeof v === "boolean" ? v : fail(where, "a bool", v)),
    string: (v: unknown, where: string): string => (v === null ? "" : typeof v === "string" ? v : fail(where, "a string", v)),
    bytes: (v: unknown, where: string): Uint8Array => (v === null ? new Uint8Array(0) : v instanceof Uint8Array ? v : fail(where, "bytes", v)),
    int: (v: unknown, where: string): number => Number(toInteger(where, v, true, 64)),
    uint: (v: unknown, where: string): number => Number(toInteger(where, v, false, 64)),
    int64: (v: unknown, where: string): bigint => BigInt(toInteger(where, v, true, 64)),
    uint64: (v: unknown, where: string): bigint => BigInt(toInteger(where, v, false, 64)),
    float: (v: unknown, where: string): number =>
      typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : fail(where, "a number", v),
    time: (v: unknown, where: string): Date => (v instanceof Date ? v : fail(where, "a timestamp", v)),
    any: (v: unknown): unknown => v,
  },
  /** Encoding: check a field value and give what msgpack should write. */
  put: {
    bool: (v: boolean): boolean => v === true,
    string: (v: string): string => String(v ?? ""),
    bytes: (v: Uint8Array): Uint8Array => v ?? new Uint8Array(0),
    int: (v: number): number => Number(toInteger("int field", v, true, 32)),
    uint: (v: number): number => Number(toInteger("uint field", v, false, 32)),
    // 64-bit integers travel as numbers while they fit 32 bits (the
    // shortest msgpack form), as bigint (int64/uint64) beyond.
    int64: (v: bigint | number): number | bigint => compact(toInteger("int64 field", v, true, 64)),
    uint64: (v: bigint | number): number | bigint => compact(toInteger("uint64 field", v, false, 64)),
    float: (v: number): number => Number(v),
    time: (v: Date): Date => v,
    any: (v: unknown): unknown => v,
  },
  decodeArray<T>(v: unknown, where: string, f: (x: unknown) => T): T[] {
    if (v === null || v === undefined) return [];
    if (!Array.isArray(v)) fail(where, "an array", v);
    return v.map(f);
  },
  decodeMap<T>(v: unknown, where: string, f: (x: unknown) => T): Record<string, T> {
    if (v === null || v === undefined) return {};
    if (!isObject(v)) fail(where, "a map", v);
    const out: Record<string, T> = {};
    for (const [k, x] of Object.entries(v)) out[k] = f(x);
    return out;
  },
  decodeOptional<T>(v: unknown, f: (x: unknown) => T): T | null {
    return v === null || v === undefined ? null : f(v);
  },
  encodeArray<T>(v: readonly T[] | null | undefined, f: (x: T) => unknown): unknown[] {
    return (v ?? []).map(f);
  },
  /** Maps are objects (string keys: the generator refuses other key types). */
  encodeMap<T>(v: Record<string, T> | null | undefined, f: (x: T) => unknown): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v ?? {})) out[k] = f(x);
    return out;
  },
  encodeOptional<T>(v: T | null | undefined, f: (x: T) => unknown): unknown {
    return v === null || v === undefined ? null : f(v);
  },
  /** Whether an omitempty field is left out (Go's notion of empty). */
  empty(v: unknown): boolean {
    if (v === null || v === undefined || v === "" || v === 0 || v === 0n || v === false) return true;
    if (Array.isArray(v) || v instanceof Uint8Array) return v.length === 0;
    if (isObject(v)) return Object.keys(v).length === 0;
    return false;
  },
};

// With bigint support on, msgpack writes a number beyond 32 bits as a
// float, which a Go integer field refuses: larger values stay bigint.
function compact(n: number | bigint): number | bigint {
  return n >= -(2n ** 31n) && n < 2n ** 32n ? Number(n) : n;
}

/** One decoded frame: its message ID, seq and the undecoded body value. */
export interface Frame {
  id: number;
  seq: number;
  body: unknown;
}

const encoder = new Encoder({ useBigInt64: true, ignoreUndefined: true });

/** Encodes one WebSocket message: u16 ID, then msgpack [seq, body]. */
export function encodeFrame(id: number, seq: number, body: Record<string, unknown>, maxFrame: number): Uint8Array {
  const payload = encoder.encode([seq, body]);
  const out = new Uint8Array(2 + payload.length);
  if (out.length > maxFrame) throw new WireError(`frame of message ${id} is ${out.length} bytes, over the limit of ${maxFrame}`);
  new DataView(out.buffer).setUint16(0, id);
  out.set(payload, 2);
  return out;
}

/** Decodes one WebSocket message from the gate. */
export function decodeFrame(data: ArrayBuffer | Uint8Array, maxFrame: number): Frame {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length < 3) throw new WireError(`frame of ${bytes.length} bytes is too short`);
  if (bytes.length > maxFrame) throw new WireError(`frame of ${bytes.length} bytes is over the limit of ${maxFrame}`);
  const id = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(0);
  // A fresh decoder per frame: limits bound what one frame may claim.
  const decoder = new Decoder({
    useBigInt64: true,
    maxStrLength: maxFrame,
    maxBinLength: maxFrame,
    maxArrayLength: maxFrame,
    maxMapLength: maxFrame,
    maxExtLength: maxFrame,
  });
  const payload = decoder.decode(bytes.subarray(2));
  if (!Array.isArray(payload) || payload.length !== 2) throw new WireError(`frame of message ${id}: payload is not [seq, body]`);
  const seq = payload[0];
  if (typeof seq !== "number" || !Number.isInteger(seq) || seq < 0) throw new WireError(`frame of message ${id}: bad seq`);
  return { id, seq, body: payload[1] };
}
