// canon's receipt verifier and tally, for the browser.
//
// One algorithm with `canon verify` and `canon quorum` (src/receipt/,
// src/quorum/tally.rs), written out in docs/WEB.md: a receipt is valid here
// exactly when `canon verify` accepts it, with the same reason code when it
// does not, and the tally of valid receipts under a policy is the tally
// `canon quorum --json` prints. A plain ES module, no dependencies: ed25519
// and SHA-256 come from WebCrypto (a secure context: https, localhost or a
// file), the rest is here. Test vectors: fixtures/vectors/, checked in
// headless Chromium by tests/web.rs.

export const TALLY_VERSION = 2;
export const MAX_ENVELOPE_BYTES = 64 * 1024 * 1024;
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE = 'https://canon.dev/receipt/v1';
const SCORE_EPSILON = 1e-9;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Why a receipt is not valid: `code` is canon's stable reason code. */
export class ReceiptError extends Error {
  constructor(code, message, signer = null) {
    super(message);
    this.code = code;
    this.signer = signer;
  }
}

class Malformed extends Error {}

// ------------------------------------------------------------------ bytes

function hex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

function concat(parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
}

function cmpBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

/** The SHA-256 of `bytes` in lowercase hex, as canon writes digests. */
export async function sha256Hex(bytes) {
  return hex(await sha256(bytes));
}

/** DSSE v1 pre-authentication encoding. */
export function pae(payloadType, payload) {
  const t = utf8.encode(payloadType);
  return concat([utf8.encode(`DSSEv1 ${t.length} `), t, utf8.encode(` ${payload.length} `), payload]);
}

// canon's canonical encodings (src/encoding.rs): tag, newline, fields.
class Encoder {
  constructor(tag) {
    this.parts = [utf8.encode(tag + '\n')];
  }
  u8(v) {
    this.parts.push(Uint8Array.of(v));
    return this;
  }
  u32(v) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    this.parts.push(b);
    return this;
  }
  u64(v) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    this.parts.push(b);
    return this;
  }
  bytes(v) {
    this.u64(v.length);
    this.parts.push(v);
    return this;
  }
  str(s) {
    return this.bytes(utf8.encode(s));
  }
  digest(h) {
    this.parts.push(hexToBytes(h));
    return this;
  }
  done() {
    return concat(this.parts);
  }
}

function hexToBytes(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

// ------------------------------------------------------------------ base64
// Standard or URL-safe, padded or not (the base64 crate's Indifferent
// padding mode, trailing bits must be zero).

const B64_STD = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function b64With(text, alphabet) {
  const n = text.length;
  const rem = n % 4;
  const bodyLen = rem > 0 ? n - rem : n === 0 ? 0 : n - 4;
  const out = [];
  const val = (c) => {
    const v = alphabet.indexOf(c);
    if (v < 0 || c === '') throw new Malformed(`invalid base64 character ${JSON.stringify(c)}`);
    return v;
  };
  for (let i = 0; i < bodyLen; i += 4) {
    const a = val(text[i]), b = val(text[i + 1]), c = val(text[i + 2]), d = val(text[i + 3]);
    const w = (a << 18) | (b << 12) | (c << 6) | d;
    out.push((w >> 16) & 255, (w >> 8) & 255, w & 255);
  }
  const suffix = text.slice(bodyLen);
  const morsels = [];
  let pads = 0;
  for (let i = 0; i < suffix.length; i++) {
    if (suffix[i] === '=') {
      if (i < 2) throw new Malformed('invalid base64 padding');
      pads++;
      continue;
    }
    if (pads > 0) throw new Malformed('invalid base64 padding');
    morsels.push(val(suffix[i]));
  }
  if (n > 0 && morsels.length < 2) throw new Malformed('invalid base64 length');
  const keep = Math.floor((morsels.length * 6) / 8);
  let num = 0n;
  for (let i = 0; i < 4; i++) num = (num << 6n) | BigInt(morsels[i] ?? 0);
  num <<= 8n; // 32 bits, as the crate packs them
  const mask = 0xffffffffn >> BigInt(keep * 8);
  if ((num & mask) !== 0n) throw new Malformed('invalid base64: trailing bits set');
  for (let i = 0; i < keep; i++) out.push(Number((num >> BigInt(24 - 8 * i)) & 255n));
  return Uint8Array.from(out);
}

/** Decodes standard or URL-safe base64, with or without padding. */
export function decodeBase64(text) {
  try {
    return b64With(text, B64_STD);
  } catch (e) {
    try {
      return b64With(text, B64_URL);
    } catch {
      throw e;
    }
  }
}

// ------------------------------------------------------------------ JSON
// A JSON reader that accepts exactly what serde_json's from_slice accepts
// for canon's types: strings decoded only where a value is read (decoded
// strings must be UTF-8 with paired surrogates; ignored ones only need
// valid escapes), integers kept exact, duplicate known fields refused,
// unknown fields ignored, structs as objects or as arrays of their fields.

function parseJson(bytes) {
  let i = 0;
  const n = bytes.length;
  const ws = () => {
    while (i < n && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)) i++;
  };
  const fail = (what) => {
    throw new Malformed(`${what} at byte ${i}`);
  };
  const isHex = (b) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
  const string = () => {
    const lo = ++i; // after the quote
    for (;;) {
      if (i >= n) fail('EOF while parsing a string');
      const b = bytes[i];
      if (b === 0x22) break;
      if (b < 0x20) fail('control character in a string');
      if (b === 0x5c) {
        i++;
        if (i >= n) fail('EOF while parsing a string');
        const e = bytes[i];
        if (e === 0x75) {
          if (i + 4 >= n) fail('EOF while parsing a string');
          for (let k = 1; k <= 4; k++) if (!isHex(bytes[i + k])) fail('invalid escape');
          i += 4;
        } else if (![0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74].includes(e)) fail('invalid escape');
      }
      i++;
    }
    const node = { k: 's', lo, hi: i, bytes };
    i++;
    return node;
  };
  const number = () => {
    const lo = i;
    if (bytes[i] === 0x2d) i++;
    const digit = () => i < n && bytes[i] >= 0x30 && bytes[i] <= 0x39;
    if (!digit()) fail('invalid number');
    if (bytes[i] === 0x30) {
      i++;
      if (digit()) fail('invalid number');
    } else while (digit()) i++;
    if (bytes[i] === 0x2e) {
      i++;
      if (!digit()) fail('invalid number');
      while (digit()) i++;
    }
    if (bytes[i] === 0x65 || bytes[i] === 0x45) {
      i++;
      if (bytes[i] === 0x2b || bytes[i] === 0x2d) i++;
      if (!digit()) fail('invalid number');
      while (digit()) i++;
    }
    return { k: 'n', raw: String.fromCharCode(...bytes.subarray(lo, i)) };
  };
  const literal = (word, node) => {
    for (let k = 0; k < word.length; k++) if (bytes[i + k] !== word.charCodeAt(k)) fail('expected a value');
    i += word.length;
    return node;
  };
  // Iterative, so that deep nesting (which serde_json ignores iteratively
  // inside unknown fields) cannot exhaust the stack.
  const stack = [];
  let root;
  let value;
  for (;;) {
    ws();
    if (i >= n) fail('EOF while parsing a value');
    const b = bytes[i];
    if (b === 0x7b || b === 0x5b) {
      i++;
      const node = b === 0x7b ? { k: 'o', entries: [] } : { k: 'a', items: [] };
      ws();
      if (bytes[i] === (b === 0x7b ? 0x7d : 0x5d)) {
        i++;
        value = node;
      } else {
        stack.push({ node, key: null });
        if (b === 0x7b) {
          if (bytes[i] !== 0x22) fail('expected a key');
          stack[stack.length - 1].key = string();
          ws();
          if (bytes[i] !== 0x3a) fail("expected ':'");
          i++;
        }
        continue;
      }
    } else if (b === 0x22) value = string();
    else if (b === 0x2d || (b >= 0x30 && b <= 0x39)) value = number();
    else if (b === 0x74) value = literal('true', { k: 'b', v: true });
    else if (b === 0x66) value = literal('false', { k: 'b', v: false });
    else if (b === 0x6e) value = literal('null', { k: 'z' });
    else fail('expected a value');
    // Attach `value` and close containers as far as they end.
    for (;;) {
      const top = stack[stack.length - 1];
      if (!top) {
        root = value;
        break;
      }
      if (top.node.k === 'o') top.node.entries.push({ key: top.key, val: value });
      else top.node.items.push(value);
      ws();
      const close = top.node.k === 'o' ? 0x7d : 0x5d;
      if (bytes[i] === 0x2c) {
        i++;
        if (top.node.k === 'o') {
          ws();
          if (bytes[i] !== 0x22) fail('expected a key');
          top.key = string();
          ws();
          if (bytes[i] !== 0x3a) fail("expected ':'");
          i++;
        }
        value = undefined;
        break;
      }
      if (bytes[i] !== close) fail("expected ',' or a closing bracket");
      i++;
      stack.pop();
      value = top.node;
    }
    if (root !== undefined) break;
  }
  ws();
  if (i !== n) fail('trailing characters');
  return root;
}

/** The text of a string node, as serde decodes a `String`. */
function decodeString(node) {
  const { bytes, lo, hi } = node;
  const out = [];
  let start = lo;
  const flush = (end) => {
    if (end > start) out.push(strictUtf8.decode(bytes.subarray(start, end)));
  };
  const hex4 = (at) => parseInt(String.fromCharCode(...bytes.subarray(at, at + 4)), 16);
  try {
    let i = lo;
    while (i < hi) {
      if (bytes[i] !== 0x5c) {
        i++;
        continue;
      }
      flush(i);
      const e = bytes[i + 1];
      if (e !== 0x75) {
        out.push({ 0x22: '"', 0x5c: '\\', 0x2f: '/', 0x62: '\b', 0x66: '\f', 0x6e: '\n', 0x72: '\r', 0x74: '\t' }[e]);
        i += 2;
      } else {
        const u = hex4(i + 2);
        i += 6;
        if (u >= 0xdc00 && u <= 0xdfff) throw new Malformed('lone trailing surrogate in a string');
        if (u >= 0xd800 && u <= 0xdbff) {
          if (bytes[i] !== 0x5c || bytes[i + 1] !== 0x75) throw new Malformed('unexpected end of hex escape');
          const u2 = hex4(i + 2);
          i += 6;
          if (u2 < 0xdc00 || u2 > 0xdfff) throw new Malformed('lone leading surrogate in a string');
          out.push(String.fromCharCode(u, u2));
        } else out.push(String.fromCharCode(u));
      }
      start = i;
    }
    flush(hi);
  } catch (e) {
    if (e instanceof Malformed) throw e;
    throw new Malformed('invalid UTF-8 in a string');
  }
  return out.join('');
}

// serde's view of a value, by type.
const de = {
  string(v) {
    if (v.k !== 's') throw new Malformed('expected a string');
    return decodeString(v);
  },
  uint(bits) {
    const max = (1n << BigInt(bits)) - 1n;
    return (v) => {
      if (v.k !== 'n') throw new Malformed(`expected u${bits}`);
      if (!/^(0|[1-9][0-9]*)$/.test(v.raw) || BigInt(v.raw) > max) throw new Malformed(`invalid value ${v.raw}, expected u${bits}`);
      return BigInt(v.raw);
    };
  },
  option(inner) {
    return (v) => (v.k === 'z' ? null : inner(v));
  },
  vec(inner) {
    return (v) => {
      if (v.k !== 'a') throw new Malformed('expected a sequence');
      return v.items.map(inner);
    };
  },
  // A unit-only enum: "name", or {"name": null}.
  unitEnum(names) {
    return (v) => {
      let name;
      if (v.k === 's') name = decodeString(v);
      else if (v.k === 'o' && v.entries.length === 1 && v.entries[0].val.k === 'z') name = decodeString(v.entries[0].key);
      else throw new Malformed('expected an enum variant');
      if (!names.includes(name)) throw new Malformed(`unknown variant ${JSON.stringify(name)}`);
      return name;
    };
  },
  // A struct: fields [name, decoder, kind] with kind 'req' | 'default'
  // (#[serde(default)] or an Option: absent is null).
  struct(fields, { denyUnknown = false, optionAbsent = [] } = {}) {
    return (v) => {
      const out = {};
      if (v.k === 'a') {
        if (v.items.length > fields.length) throw new Malformed('trailing elements in a sequence');
        fields.forEach(([name, dec, kind], idx) => {
          if (idx < v.items.length) out[name] = dec(v.items[idx]);
          else if (kind === 'default') out[name] = null;
          else throw new Malformed(`invalid length ${v.items.length}`);
        });
        return out;
      }
      if (v.k !== 'o') throw new Malformed('expected a struct');
      const seen = new Set();
      for (const { key, val } of v.entries) {
        const name = decodeString(key);
        const f = fields.find((x) => x[0] === name);
        if (!f) {
          if (denyUnknown) throw new Malformed(`unknown field ${JSON.stringify(name)}`);
          continue;
        }
        if (seen.has(name)) throw new Malformed(`duplicate field ${JSON.stringify(name)}`);
        seen.add(name);
        out[name] = f[1](val);
      }
      for (const [name, , kind] of fields) {
        if (seen.has(name)) continue;
        if (kind === 'default' || optionAbsent.includes(name)) out[name] = null;
        else throw new Malformed(`missing field ${JSON.stringify(name)}`);
      }
      return out;
    };
  },
};

const DIGEST = (v) => {
  const s = de.string(v);
  const h = s.startsWith('sha256:') ? s.slice(7) : s;
  if (!/^[0-9a-f]{64}$/.test(h)) throw new Malformed(`invalid digest ${JSON.stringify(s)}`);
  return h;
};

const UUID_HYPHENATED = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const RUN_ID = (v) => {
  const s = de.string(v);
  const b = utf8.encode(s);
  let h = null;
  if (b.length === 32 && /^[0-9a-fA-F]{32}$/.test(s)) h = s;
  else if (b.length === 36 && UUID_HYPHENATED.test(s)) h = s;
  else if (b.length === 38 && s[0] === '{' && s[37] === '}' && UUID_HYPHENATED.test(s.slice(1, 37))) h = s.slice(1, 37);
  else if (b.length === 45 && s.slice(0, 9).toLowerCase() === 'urn:uuid:' && UUID_HYPHENATED.test(s.slice(9))) h = s.slice(9);
  if (h === null) throw new Malformed(`invalid run id ${JSON.stringify(s)}`);
  h = h.replaceAll('-', '').toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};

// RFC 3339 as the time crate reads it: any one-byte separator, any number
// of fraction digits, z or Z, leap seconds only as the last second of a UTC
// month; converted to UTC, whole seconds, within years 0..9999 (outside
// them canon refuses the receipt).
const TIMESTAMP = (v) => {
  const s = de.string(v);
  const b = utf8.encode(s);
  const m = /^(\d{4})-(\d{2})-(\d{2})[\x00-\x7f](\d{2}):(\d{2}):(\d{2})(\.\d+)?([zZ]|[+-]\d{2}:\d{2})$/.exec(s);
  const bad = () => new Malformed(`${JSON.stringify(s)} is not an RFC 3339 time`);
  if (!m || b.length !== s.length) throw bad();
  const [y, mo, d, hh, mm, ss] = m.slice(1, 7).map(Number);
  const leapYear = (yr) => yr % 4 === 0 && (yr % 100 !== 0 || yr % 400 === 0);
  const days = (yr, mon) => [31, leapYear(yr) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mon - 1];
  if (mo < 1 || mo > 12 || d < 1 || d > days(y, mo) || hh > 23 || mm > 59 || ss > 60) throw bad();
  let offset = 0;
  if (m[8].length > 1) {
    const oh = Number(m[8].slice(1, 3));
    const om = Number(m[8].slice(4, 6));
    if (oh > 23 || om > 59) throw bad();
    offset = (m[8][0] === '-' ? -1 : 1) * (oh * 3600 + om * 60);
  }
  const secs = Math.floor(civil(y, mo, d) * 86400 + hh * 3600 + mm * 60 + Math.min(ss, 59) - offset);
  if (ss === 60) {
    // A leap second stands in as 23:59:59.999999999 UTC on a month's last day.
    const u = fromCivilSeconds(secs);
    if (!(u.hh === 23 && u.mm === 59 && u.ss === 59 && u.d === days(u.y, u.mo))) throw bad();
  }
  const u = fromCivilSeconds(secs);
  if (u.y < -9999 || u.y > 9999) throw new Malformed(`${JSON.stringify(s)} is outside the years canon reads`);
  const p2 = (x) => String(x).padStart(2, '0');
  const yy = u.y < 0 ? '-' + String(-u.y).padStart(4, '0') : String(u.y).padStart(4, '0');
  return `${yy}-${p2(u.mo)}-${p2(u.d)}T${p2(u.hh)}:${p2(u.mm)}:${p2(u.ss)}Z`;
};

// Days since 1970-01-01 of a proleptic Gregorian date, and back.
function civil(y, m, d) {
  y -= m <= 2 ? 1 : 0;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function fromCivilSeconds(secs) {
  const days = Math.floor(secs / 86400);
  let rest = secs - days * 86400;
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const mo = mp + (mp < 10 ? 3 : -9);
  const y = yoe + era * 400 + (mo <= 2 ? 1 : 0);
  const hh = Math.floor(rest / 3600);
  rest -= hh * 3600;
  const mm = Math.floor(rest / 60);
  return { y, mo, d, hh, mm, ss: rest - mm * 60 };
}

export const TRAP_KINDS = [
  'unreachable', 'memory_out_of_bounds', 'integer_divide_by_zero', 'integer_overflow', 'bad_conversion_to_integer',
  'indirect_call_type_mismatch', 'indirect_call_to_null', 'table_out_of_bounds', 'stack_overflow', 'out_of_fuel',
  'memory_limit', 'stdout_limit', 'stderr_limit', 'output_limit', 'unaligned_atomic', 'null_reference',
  'no_entry_point', 'other', 'unknown_import', 'call_depth_exceeded', 'uncaught_exception',
];

// ------------------------------------------------------------------ ed25519 points
// Only what `verify_strict` checks beyond RFC 8032 verification, which
// WebCrypto does: that a key and a signature's R decompress, and are not of
// small order.

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const mod = (a) => ((a % P) + P) % P;
function pow(b, e) {
  let r = 1n;
  b = mod(b);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return r;
}
const inv = (a) => pow(a, P - 2n);
const D = mod(-121665n * inv(121666n));
const SQRT_M1 = pow(2n, (P - 1n) / 4n);

function leInt(bytes) {
  let x = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(bytes[i]);
  return x;
}

/** The affine point of a compressed encoding, or null (as curve25519-dalek decompresses). */
function decompress(bytes) {
  const y = mod(leInt(bytes) & ((1n << 255n) - 1n));
  const sign = bytes[31] >> 7;
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  let x = mod(u * pow(v, 3n) * pow(u * pow(v, 7n), (P - 5n) / 8n));
  const vx2 = mod(v * x * x);
  if (vx2 === u) {
    /* x is a root */
  } else if (vx2 === mod(-u)) x = mod(x * SQRT_M1);
  else return null;
  if (x & 1n) x = mod(-x);
  if (sign) x = mod(-x);
  return { x, y };
}

function add(p, q) {
  const t = mod(D * p.x * q.x * p.y * q.y);
  return { x: mod((p.x * q.y + p.y * q.x) * inv(1n + t)), y: mod((p.y * q.y + p.x * q.x) * inv(1n - t)) };
}

function isSmallOrder(pt) {
  let q = pt;
  for (let k = 0; k < 3; k++) q = add(q, q);
  return q.x === 0n && q.y === 1n;
}

// ------------------------------------------------------------------ node ids

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base58(text) {
  const out = [];
  for (const c of text) {
    let carry = B58.indexOf(c);
    if (carry < 0) throw new Malformed(`invalid base58btc character ${JSON.stringify(c)}`);
    for (let j = 0; j < out.length; j++) {
      carry += out[j] * 58;
      out[j] = carry & 255;
      carry >>= 8;
    }
    while (carry > 0) {
      out.push(carry & 255);
      carry >>= 8;
    }
  }
  for (const c of text) {
    if (c !== '1') break;
    out.push(0);
  }
  return Uint8Array.from(out.reverse());
}

const nodeCache = new Map();

/** Parses a did:key node id into its 32 key bytes; throws Malformed. */
export function parseNodeId(s) {
  const hit = nodeCache.get(s);
  if (hit) return hit;
  if (!s.startsWith('did:key:')) throw new Malformed(`${JSON.stringify(s)} is not a did:key (expected "did:key:z6Mk…")`);
  const mb = s.slice(8);
  if (!mb.startsWith('z')) throw new Malformed(`${JSON.stringify(s)}: did:key must be base58btc, starting with "z"`);
  const b58 = mb.slice(1);
  if (utf8.encode(b58).length > 64) throw new Malformed(`${JSON.stringify(s)}: too long for an ed25519 key`);
  const bytes = base58(b58);
  if (bytes.length < 2 || bytes[0] !== 0xed || bytes[1] !== 0x01) throw new Malformed(`${JSON.stringify(s)}: not an ed25519 key (multicodec 0xed)`);
  if (bytes.length !== 34) throw new Malformed(`${JSON.stringify(s)}: ed25519 public key must be 32 bytes, found ${bytes.length - 2}`);
  const key = bytes.slice(2);
  const pt = decompress(key);
  if (!pt || isSmallOrder(pt)) throw new Malformed(`${JSON.stringify(s)}: not a valid ed25519 public key (not a curve point, or a small-order point)`);
  const id = { text: s, key };
  if (nodeCache.size > 4096) nodeCache.clear();
  nodeCache.set(s, id);
  return id;
}

/** The short form of a node id for tables: `z6Mk` and eight more characters. */
export function shortNode(id) {
  return id.slice(8, 20);
}

// ------------------------------------------------------------------ receipts

const NODE_ID = (v) => parseNodeId(de.string(v));
const DIGEST_SET = de.struct([['sha256', DIGEST, 'req']]);
const SUBJECT = de.struct([['name', de.string, 'req'], ['digest', DIGEST_SET, 'req']]);
const ENGINE = de.struct([
  ['canon', de.string, 'req'],
  ['wasmtime', de.string, 'req'],
  ['backend', de.string, 'req'],
  ['determinismAbi', de.uint(32), 'req'],
]);
const MANIFEST_ENTRY = de.struct([
  ['path', de.string, 'req'],
  ['kind', de.unitEnum(['dir', 'file', 'symlink']), 'req'],
  ['size', de.uint(64), 'req'],
  ['sha256', DIGEST, 'req'],
]);
const OUTCOME = (v) => {
  const w = de.struct([
    ['exitCode', de.option(de.uint(32)), 'default'],
    ['trap', de.option(de.unitEnum(TRAP_KINDS)), 'default'],
    ['fuelConsumed', de.uint(64), 'req'],
    ['stdout', DIGEST_SET, 'req'],
    ['stderr', DIGEST_SET, 'req'],
    ['manifest', de.vec(MANIFEST_ENTRY), 'req'],
    ['manifestDigest', DIGEST, 'req'],
    ['digest', DIGEST, 'req'],
  ])(v);
  if (w.exitCode !== null && w.trap !== null) throw new Malformed('outcome has both "exitCode" and "trap"; exactly one is allowed');
  if (w.exitCode === null && w.trap === null) throw new Malformed('outcome has neither "exitCode" nor "trap"');
  return w;
};
const JOB_REQUEST = de.struct([['submitter', NODE_ID, 'req'], ['sha256', DIGEST, 'req']], { denyUnknown: true });
const PREDICATE = de.struct([
  ['jobDigest', DIGEST, 'req'],
  ['runId', RUN_ID, 'req'],
  ['node', NODE_ID, 'req'],
  ['engine', ENGINE, 'req'],
  ['outcome', OUTCOME, 'req'],
  ['jobRequest', de.option(JOB_REQUEST), 'default'],
  ['started', TIMESTAMP, 'req'],
  ['finished', TIMESTAMP, 'req'],
]);
const STATEMENT = de.struct([
  ['_type', de.string, 'req'],
  ['subject', de.vec(SUBJECT), 'req'],
  ['predicateType', de.string, 'req'],
  ['predicate', PREDICATE, 'req'],
]);
const STATEMENT_HEADER = de.struct(
  [['_type', de.option(de.string), 'opt'], ['predicateType', de.option(de.string), 'opt']],
  { optionAbsent: ['_type', 'predicateType'] },
);
const ENVELOPE = de.struct([
  ['payload', (v) => decodeBase64(de.string(v)), 'req'],
  ['payloadType', de.string, 'req'],
  ['signatures', de.vec(de.struct([['keyid', de.string, 'default'], ['sig', (v) => decodeBase64(de.string(v)), 'req']])), 'req'],
]);

const keyCache = new Map();
async function importKey(key) {
  const h = hex(key);
  let k = keyCache.get(h);
  if (!k) {
    k = crypto.subtle.importKey('raw', key, { name: 'Ed25519' }, false, ['verify']);
    if (keyCache.size > 4096) keyCache.clear();
    keyCache.set(h, k);
  }
  return k;
}

/** ed25519 `verify_strict`: WebCrypto's RFC 8032 check, plus dalek's refusal of small-order R. */
async function verifyStrict(key, sig, message) {
  if (leInt(sig.subarray(32)) >= L) return false;
  const r = decompress(sig.subarray(0, 32));
  if (!r || isSmallOrder(r)) return false;
  try {
    return await crypto.subtle.verify({ name: 'Ed25519' }, await importKey(key), sig, message);
  } catch {
    return false;
  }
}

function manifestEncoding(entries) {
  const e = new Encoder('canon/manifest/v1');
  e.u64(entries.length);
  for (const x of entries) e.str(x.path).u8({ dir: 0, file: 1, symlink: 2 }[x.kind]).u64(x.size).digest(x.sha256);
  return e.done();
}

function outcomeEncoding(o) {
  const e = new Encoder('canon/outcome/v1');
  if (o.exitCode !== null) e.u8(0).u32(Number(o.exitCode));
  else e.u8(1).str(o.trap);
  return e.u64(o.fuelConsumed).digest(o.stdout.sha256).digest(o.stderr.sha256).digest(o.manifestDigest).done();
}

/**
 * Verifies one envelope (bytes), as `canon verify` does. Resolves to a
 * receipt; rejects with a ReceiptError carrying canon's reason code.
 */
export async function verifyEnvelope(bytes) {
  if (!(bytes instanceof Uint8Array)) bytes = utf8.encode(String(bytes));
  if (bytes.length > MAX_ENVELOPE_BYTES) throw new ReceiptError('too_large', `envelope is ${bytes.length} bytes, more than the limit of ${MAX_ENVELOPE_BYTES}`);
  let env;
  try {
    env = ENVELOPE(parseJson(bytes));
  } catch (e) {
    if (!(e instanceof Malformed)) throw e;
    throw new ReceiptError('malformed_envelope', `malformed DSSE envelope: ${e.message}`);
  }
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) throw new ReceiptError('wrong_payload_type', `payloadType is ${JSON.stringify(env.payloadType)}, expected "${IN_TOTO_PAYLOAD_TYPE}"`);
  if (env.signatures.length !== 1) throw new ReceiptError('signature_count', `envelope has ${env.signatures.length} signatures; a canon receipt has exactly one`);
  const [sig] = env.signatures;
  let signer;
  try {
    signer = parseNodeId(sig.keyid ?? '');
  } catch (e) {
    if (!(e instanceof Malformed)) throw e;
    throw new ReceiptError('bad_keyid', `signature keyid: ${e.message}`);
  }
  if (sig.sig.length !== 64) throw new ReceiptError('bad_signature_encoding', `signature is ${sig.sig.length} bytes, an ed25519 signature is 64`, signer.text);
  if (!(await verifyStrict(signer.key, sig.sig, pae(env.payloadType, env.payload)))) {
    throw new ReceiptError('bad_signature', `signature does not verify for ${signer.text} (forged, made by another key, or the payload changed after signing)`, signer.text);
  }
  return checkStatement(signer, env.payload);
}

async function checkStatement(signer, payload) {
  const fail = (code, message) => {
    throw new ReceiptError(code, message, signer.text);
  };
  let st;
  try {
    st = STATEMENT(parseJson(payload));
  } catch (e) {
    if (!(e instanceof Malformed)) throw e;
    let h = null;
    try {
      h = STATEMENT_HEADER(parseJson(payload));
    } catch (e2) {
      if (!(e2 instanceof Malformed)) throw e2;
    }
    if (h && h._type !== null && h._type !== STATEMENT_TYPE) fail('wrong_statement_type', `statement _type is ${JSON.stringify(h._type)}, expected "${STATEMENT_TYPE}"`);
    if (h && h.predicateType !== null && h.predicateType !== PREDICATE_TYPE) fail('wrong_predicate_type', `predicateType is ${JSON.stringify(h.predicateType)}, expected "${PREDICATE_TYPE}"`);
    fail('malformed_statement', `payload is not a valid canon receipt statement: ${e.message}`);
  }
  if (st._type !== STATEMENT_TYPE) fail('wrong_statement_type', `statement _type is ${JSON.stringify(st._type)}, expected "${STATEMENT_TYPE}"`);
  if (st.predicateType !== PREDICATE_TYPE) fail('wrong_predicate_type', `predicateType is ${JSON.stringify(st.predicateType)}, expected "${PREDICATE_TYPE}"`);
  const p = st.predicate;
  if (cmpBytes(p.node.key, signer.key) !== 0) fail('node_mismatch', `statement claims node ${p.node.text}, but was signed by ${signer.text}`);
  const o = p.outcome;
  const paths = o.manifest.map((e) => utf8.encode(e.path));
  for (let k = 1; k < paths.length; k++) {
    if (cmpBytes(paths[k - 1], paths[k]) >= 0) fail('malformed_manifest', `manifest is malformed: ${JSON.stringify(o.manifest[k - 1].path)} is not before ${JSON.stringify(o.manifest[k].path)} (entries must be sorted and unique)`);
  }
  const bad = o.manifest.find((e) => !e.path.startsWith('/') || e.path.split('/').slice(1).some((c) => c === '' || c === '.' || c === '..'));
  if (bad) fail('malformed_manifest', `manifest is malformed: ${JSON.stringify(bad.path)} is not a normalised absolute guest path`);
  const md = hex(await sha256(manifestEncoding(o.manifest)));
  if (md !== o.manifestDigest) fail('manifest_digest_mismatch', `manifest digest is ${o.manifestDigest}, but the manifest hashes to ${md}`);
  const od = hex(await sha256(outcomeEncoding(o)));
  if (od !== o.digest) fail('outcome_digest_mismatch', `outcome digest is ${o.digest}, but its parts hash to ${od}`);
  const claimed = new Map();
  for (const s of st.subject) {
    if (claimed.has(s.name)) fail('subject_mismatch', 'subjects do not match the outcome: a subject name appears twice');
    claimed.set(s.name, s.digest.sha256);
  }
  const expected = new Map([['canon:stdout', o.stdout.sha256], ['canon:stderr', o.stderr.sha256]]);
  for (const e of o.manifest) if (e.kind === 'file') expected.set(e.path, e.sha256);
  for (const [name, d] of expected) {
    if (!claimed.has(name)) fail('subject_mismatch', `subjects do not match the outcome: no subject ${JSON.stringify(name)}`);
    if (claimed.get(name) !== d) fail('subject_mismatch', `subjects do not match the outcome: subject ${JSON.stringify(name)} has sha256 ${claimed.get(name)}, the outcome says ${d}`);
  }
  for (const name of claimed.keys()) if (!expected.has(name)) fail('subject_mismatch', `subjects do not match the outcome: subject ${JSON.stringify(name)} is not in the outcome`);
  return {
    node: signer.text,
    nodeKey: signer.key,
    job: p.jobDigest,
    runId: p.runId,
    engine: { canon: p.engine.canon, wasmtime: p.engine.wasmtime, backend: p.engine.backend, determinism_abi: Number(p.engine.determinismAbi) },
    outcome: o.digest,
    termination: o.exitCode !== null ? `exit ${o.exitCode}` : `trap ${o.trap}`,
    fuelConsumed: o.fuelConsumed,
    stdout: o.stdout.sha256,
    stderr: o.stderr.sha256,
    manifest: o.manifest,
    jobRequest: p.jobRequest ? { submitter: p.jobRequest.submitter.text, sha256: p.jobRequest.sha256 } : null,
    started: p.started,
    finished: p.finished,
  };
}

// RFC 8032's first test vector (empty message).
const PROBE_KEY = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
const PROBE_SIG = 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';

/** Whether this browser can verify here: WebCrypto with Ed25519 (a secure context). */
export async function supported() {
  try {
    if (!globalThis.crypto?.subtle) return false;
    const k = await crypto.subtle.importKey('raw', hexToBytes(PROBE_KEY), { name: 'Ed25519' }, false, ['verify']);
    return await crypto.subtle.verify({ name: 'Ed25519' }, k, hexToBytes(PROBE_SIG), new Uint8Array(0));
  } catch {
    return false;
  }
}

/** `--job-digest`: the receipt must name this job. */
export function checkJob(receipt, expected) {
  if (receipt.job !== expected) throw new ReceiptError('job_mismatch', `receipt is for job ${receipt.job}, expected job ${expected}`, receipt.node);
}

/** Verifies an envelope and never throws: {ok, receipt} or {ok: false, code, message, node}. */
export async function verify(bytes, { expectedJob = null } = {}) {
  try {
    const receipt = await verifyEnvelope(bytes);
    if (expectedJob) checkJob(receipt, expectedJob);
    return { ok: true, receipt };
  } catch (e) {
    if (e instanceof ReceiptError) return { ok: false, code: e.code, message: e.message, node: e.signer };
    return { ok: false, code: 'malformed_envelope', message: `cannot read the envelope: ${e}`, node: null };
  }
}

// ------------------------------------------------------------------ the tally

function parseSemver(text) {
  const m = /^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/.exec(text);
  if (!m) return null;
  const [maj, min, pat] = [m[1], m[2], m[3]].map(BigInt);
  const limit = (1n << 64n) - 1n;
  if (maj > limit || min > limit || pat > limit) return null;
  const pre = m[4] ?? '';
  if (pre.split('.').some((x) => x.length > 1 && /^[0-9]+$/.test(x) && x[0] === '0')) return null;
  return { nums: [maj, min, pat], pre, build: m[5] ?? '' };
}

function cmpIdentifiers(l, r, build) {
  const ls = l.split('.');
  const rs = r.split('.');
  for (let k = 0; k < ls.length; k++) {
    if (k >= rs.length) return 1;
    const a = ls[k], b = rs[k];
    const da = /^[0-9]*$/.test(a), db = /^[0-9]*$/.test(b);
    let o;
    if (da && db) {
      const av = build ? a.replace(/^0+/, '') : a;
      const bv = build ? b.replace(/^0+/, '') : b;
      o = cmp(av.length, bv.length) || cmp(av, bv) || (build ? cmp(a.length, b.length) : 0);
    } else if (da) return -1;
    else if (db) return 1;
    else o = cmp(a, b);
    if (o) return o;
  }
  return rs.length > ls.length ? -1 : 0;
}

function cmpSemver(a, b) {
  if (a === null || b === null) return a === null ? (b === null ? 0 : -1) : 1;
  for (let k = 0; k < 3; k++) if (a.nums[k] !== b.nums[k]) return a.nums[k] < b.nums[k] ? -1 : 1;
  if (a.pre !== b.pre) {
    if (a.pre === '') return 1;
    if (b.pre === '') return -1;
    const o = cmpIdentifiers(a.pre, b.pre, false);
    if (o) return o;
  }
  if (a.build === b.build) return 0;
  return cmpIdentifiers(a.build, b.build, true);
}

/** Engines oldest first: by determinism ABI, then canon version, then wasmtime version. */
export function cmpEngine(a, b) {
  return (
    cmp(a.determinism_abi, b.determinism_abi) ||
    cmpSemver(parseSemver(a.canon), parseSemver(b.canon)) ||
    cmpBytes(utf8.encode(a.canon), utf8.encode(b.canon)) ||
    cmpSemver(parseSemver(a.wasmtime), parseSemver(b.wasmtime)) ||
    cmpBytes(utf8.encode(a.wasmtime), utf8.encode(b.wasmtime))
  );
}

const engineVersion = (e) => ({ canon: e.canon, wasmtime: e.wasmtime, determinism_abi: e.determinism_abi });
const engineKey = (e) => JSON.stringify([e.canon, e.wasmtime, e.determinism_abi]);
const engineText = (e) => `canon ${e.canon} (ABI ${e.determinism_abi}, wasmtime ${e.wasmtime})`;

// f64::total_cmp for the finite weights a policy allows (-0 before +0).
function totalCmp(a, b) {
  if (a === b) return Object.is(a, -0) && Object.is(b, 0) ? -1 : Object.is(a, 0) && Object.is(b, -0) ? 1 : 0;
  return a < b ? -1 : 1;
}

// Rust's f64 sum starts from -0.0.
const sum = (xs) => xs.reduce((a, b) => a + b, -0);

/**
 * A node's credibility after `agreed` agreements and `dissented` dissents
 * under fault rate `f`, as canon's reputation ledger computes it
 * (`quorum::reputation::credibility`).
 */
export function credibilityOf(agreed, dissented, f) {
  return ((1 - f / (agreed + 1)) * (agreed + 1)) / (agreed + dissented + 1);
}

/** The policy canon uses without a policy file: every valid signer, weight 1. */
export function implicitPolicy() {
  return { implicit: true, nodes: [], min_quorum: 2, threshold: 2 / 3, unknown_weight: 1, credibility: false, fault_rate: 0.1 };
}

/**
 * Tallies receipts as `canon quorum` does. `receipts`: [{source, bytes}];
 * `options`: {policy, expectedJob, records} where `records` maps a node id
 * to its ledger record {agreed, dissented} (for a policy with credibility).
 * Resolves to the tally in canon's tally JSON shape (version 2), each
 * receipt's verification kept in `verified` for display.
 */
export async function tally(receipts, { policy = implicitPolicy(), expectedJob = null, records = null } = {}) {
  const results = await Promise.all(receipts.map((r) => verify(r.bytes)));
  const checked = results.map((res, k) => ({ source: receipts[k].source, ...res }));
  const setAside = [];
  const valid = [];
  results.forEach((res, k) => {
    const source = receipts[k].source;
    if (res.ok) valid.push({ source, r: res.receipt });
    // As canon, a set-aside receipt names its signer only once the signature was checked.
    else setAside.push({ source, node: res.code === 'bad_signature' || res.code === 'node_mismatch' ? res.node : null, code: res.code, reason: res.message });
  });

  const credibility = (node) => {
    if (!policy.credibility) return 1;
    const rec = (records && records[node]) || { agreed: 0, dissented: 0 };
    return credibilityOf(rec.agreed, rec.dissented, policy.fault_rate);
  };
  const index = new Map(policy.nodes.map((n) => [parseNodeId(n.id).text, n]));
  const listed = (node) => index.get(node) ?? null;
  const weightOf = (node) => (listed(node) ? listed(node).weight ?? 1 : policy.unknown_weight) * credibility(node);
  const keyOf = new Map(valid.map(({ r }) => [r.node, r.nodeKey]));
  const byNode = (a, b) => cmpBytes(keyOf.get(a), keyOf.get(b));

  // 2. Fix the job.
  let job = null;
  let chosenBy = 'none';
  if (expectedJob) {
    job = expectedJob;
    chosenBy = 'expected';
  } else {
    const signers = new Map();
    for (const { r } of valid) {
      if (!signers.has(r.job)) signers.set(r.job, new Set());
      signers.get(r.job).add(r.node);
    }
    let best = null;
    for (const j of [...signers.keys()].sort()) {
      const nodes = [...signers.get(j)].sort(byNode);
      const ws = nodes.map(weightOf).filter((w) => w > 0);
      const c = [sum(ws), ws.length, j];
      if (best === null || (totalCmp(c[0], best[0]) || cmp(c[1], best[1]) || cmp(best[2], c[2])) >= 0) best = c;
    }
    if (best) {
      job = best[2];
      chosenBy = 'trusted_weight';
    }
  }

  // 3. One vote per node.
  const kept = [];
  for (const v of valid) {
    if (job !== null && v.r.job !== job) setAside.push({ source: v.source, node: v.r.node, code: 'wrong_job', reason: `receipt is for job ${v.r.job.slice(0, 12)}, not the tallied job ${job.slice(0, 12)} (replay?)` });
    else kept.push(v);
  }
  kept.sort((a, b) => byNode(a.r.node, b.r.node) || cmpEngine(b.r.engine, a.r.engine));
  const chunks = (xs, same) => {
    const out = [];
    for (const x of xs) {
      if (out.length && same(out[out.length - 1][0], x)) out[out.length - 1].push(x);
      else out.push([x]);
    }
    return out;
  };
  const votes = [];
  const equivocators = [];
  const voters = [];
  for (const rs of chunks(kept, (a, b) => a.r.node === b.r.node)) {
    const first = rs[0];
    const node = first.r.node;
    voters.push(node);
    const l = listed(node);
    const equivocated = chunks(rs, (a, b) => engineKey(a.r.engine) === engineKey(b.r.engine)).some((same) => same.some((x) => x.r.outcome !== same[0].r.outcome));
    if (equivocated) {
      equivocators.push({ node, name: l?.name ?? null, trusted: l !== null || policy.implicit });
      for (const x of rs) setAside.push({ source: x.source, node, code: 'equivocation', reason: `node signed different outcomes for this job on one engine (this one ${x.r.outcome.slice(0, 12)}); all its votes are void` });
      continue;
    }
    for (const x of rs.slice(1)) {
      if (x.r.outcome === first.r.outcome) setAside.push({ source: x.source, node, code: 'duplicate', reason: `same node, same outcome as ${first.source}; counted once` });
      else setAside.push({ source: x.source, node, code: 'superseded', reason: `made on ${engineText(x.r.engine)}; the same node's receipt from a newer engine, ${first.source}, is its vote` });
    }
    const vote = {
      node,
      name: l?.name ?? null,
      trusted: l !== null || policy.implicit,
      weight: weightOf(node),
      source: first.source,
      run_id: first.r.runId,
      engine: engineVersion(first.r.engine),
      backend: first.r.engine.backend,
    };
    // The verified receipt, for pages that show what differs; not part of the tally's JSON.
    Object.defineProperty(vote, 'receipt', { value: first.r, enumerable: false });
    votes.push({ outcome: first.r.outcome, receipt: first.r, vote });
  }

  // 4. Groups and scores.
  const listedWeight = sum(policy.nodes.map((n) => (n.weight ?? 1) * credibility(parseNodeId(n.id).text)));
  const unlisted = sum(voters.filter((n) => !listed(n)).map(weightOf));
  const totalWeight = listedWeight + unlisted;
  const groupsBy = new Map();
  for (const { outcome, receipt, vote } of votes) {
    if (!groupsBy.has(outcome)) {
      groupsBy.set(outcome, { outcome, termination: receipt.termination, fuel_consumed: receipt.fuelConsumed, engines: [], votes: [], weight: 0, score: 0, counted: 0 });
    }
    const g = groupsBy.get(outcome);
    g.weight += vote.weight;
    g.counted += vote.weight > 0 ? 1 : 0;
    g.votes.push(vote);
  }
  const groups = [...groupsBy.keys()].sort().map((k) => groupsBy.get(k));
  for (const g of groups) {
    const engines = new Map(g.votes.map((v) => [engineKey(v.engine), v.engine]));
    g.engines = [...engines.values()].sort(cmpEngine);
    g.score = totalWeight > 0 ? Math.min(Math.max(g.weight / totalWeight, 0), 1) : 0;
    g.votes.sort((a, b) => totalCmp(b.weight, a.weight) || cmp(a.name === null, b.name === null) || cmpOptName(a.name, b.name) || byNode(a.node, b.node));
  }
  groups.sort((a, b) => totalCmp(b.weight, a.weight) || cmp(b.counted, a.counted) || cmp(b.votes.length, a.votes.length) || cmp(a.outcome, b.outcome));

  // 5. Verdict.
  const winners = groups.filter((g) => g.counted >= policy.min_quorum && g.score + SCORE_EPSILON >= policy.threshold);
  const outcomesByEngine = new Map();
  for (const g of groups) {
    for (const v of g.votes.filter((x) => x.weight > 0)) {
      const k = engineKey(v.engine);
      if (!outcomesByEngine.has(k)) outcomesByEngine.set(k, new Set());
      outcomesByEngine.get(k).add(g.outcome);
    }
  }
  let verdict, accepted = null;
  if (winners.length === 1) {
    verdict = 'accepted';
    accepted = winners[0].outcome;
  } else if (equivocators.some((e) => weightOf(e.node) > 0)) verdict = 'nondeterministic';
  else if ([...outcomesByEngine.values()].some((s) => s.size > 1)) verdict = 'disputed';
  else verdict = 'insufficient';
  const hasSay = (v) => v.trusted || v.weight > 0;
  let dissenters = [];
  const winner = groups.find((g) => g.outcome === accepted);
  if (winner) {
    const engines = new Set(winner.votes.filter(hasSay).map((v) => engineKey(v.engine)));
    dissenters = groups
      .filter((g) => g.outcome !== winner.outcome)
      .flatMap((g) => g.votes)
      .filter((v) => hasSay(v) && engines.has(engineKey(v.engine)))
      .map((v) => ({ node: v.node, name: v.name, trusted: v.trusted }));
  }
  const result = {
    version: TALLY_VERSION,
    job,
    job_chosen_by: chosenBy,
    verdict,
    accepted,
    policy: { implicit: policy.implicit, min_quorum: policy.min_quorum, threshold: policy.threshold, unknown_weight: policy.unknown_weight, credibility: policy.credibility },
    total_weight: totalWeight,
    receipts: receipts.length,
    groups,
    dissenters,
    equivocators,
    set_aside: setAside,
  };
  // Each receipt's own verification, in input order, for display; not part of the tally's JSON.
  Object.defineProperty(result, 'checked', { value: checked, enumerable: false });
  return result;
}

// Option<String> order: None before Some, then by UTF-8 bytes. Names of
// the two votes are compared only once both are named or both are not.
function cmpOptName(a, b) {
  if (a === null || b === null) return 0;
  return cmpBytes(utf8.encode(a), utf8.encode(b));
}

/** JSON text of a tally (integers exact, like canon's). */
export function tallyJson(t) {
  return JSON.stringify(t, (k, v) => (typeof v === 'bigint' ? `__big__${v}` : v), 2).replace(/"__big__(\d+)"/g, '$1');
}

