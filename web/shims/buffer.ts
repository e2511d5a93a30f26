// Browser stand-in for the parts of Node's Buffer the library uses: from, alloc, concat, toString.
// @ts-expect-error Buffer.from takes Node's arguments (string + encoding), not Uint8Array.from's (mapfn)
export class Buffer extends Uint8Array {
  static override from(x: ArrayLike<number> | ArrayBufferLike | string, enc?: string): Buffer {
    if (typeof x === "string") {
      if (enc === "base64") return Buffer.from(Uint8Array.from(atob(x), (c) => c.charCodeAt(0)));
      if (enc === "hex") return Buffer.from((x.match(/../g) ?? []).map((h) => parseInt(h, 16)));
      return Buffer.from(new TextEncoder().encode(x));
    }
    if (x instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && x instanceof SharedArrayBuffer))
      return new Buffer(x as ArrayBuffer);
    if (ArrayBuffer.isView(x)) return new Buffer(x.buffer as ArrayBuffer, x.byteOffset, x.byteLength);
    const b = new Buffer((x as ArrayLike<number>).length);
    b.set(x as ArrayLike<number>);
    return b;
  }
  static alloc(n: number): Buffer {
    return new Buffer(n);
  }
  static allocUnsafe(n: number): Buffer {
    return new Buffer(n);
  }
  static concat(parts: readonly Uint8Array[]): Buffer {
    const out = new Buffer(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
  static isBuffer(x: unknown): boolean {
    return x instanceof Buffer;
  }
  static byteLength(s: string): number {
    return new TextEncoder().encode(s).length;
  }
  override toString(enc = "utf8"): string {
    if (enc === "hex") return [...this].map((b) => b.toString(16).padStart(2, "0")).join("");
    if (enc === "base64") {
      let s = "";
      for (const b of this) s += String.fromCharCode(b);
      return btoa(s);
    }
    if (enc === "latin1" || enc === "binary") {
      let s = "";
      for (const b of this) s += String.fromCharCode(b);
      return s;
    }
    return new TextDecoder().decode(this);
  }
  private view(): DataView {
    return new DataView(this.buffer, this.byteOffset, this.byteLength);
  }
  writeUInt16LE(v: number, o = 0): number {
    this.view().setUint16(o, v, true);
    return o + 2;
  }
  writeUInt32LE(v: number, o = 0): number {
    this.view().setUint32(o, v >>> 0, true);
    return o + 4;
  }
  readUInt16LE(o: number): number {
    return this.view().getUint16(o, true);
  }
  readUInt32LE(o: number): number {
    return new DataView(this.buffer, this.byteOffset, this.byteLength).getUint32(o, true);
  }
  readBigUInt64LE(o: number): bigint {
    return new DataView(this.buffer, this.byteOffset, this.byteLength).getBigUint64(o, true);
  }
}
export default { Buffer };
