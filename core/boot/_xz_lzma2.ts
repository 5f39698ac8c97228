/**
 * LZMA2 decoder (the .xz format's filter 0x21) into one preallocated output buffer, which also
 * serves as the dictionary: a whole-image decoder needs no ring buffer. Written for speed on a
 * 60+ MB kernel: one Uint16Array of probabilities, a range decoder whose state lives in
 * numeric fields, and no allocation per symbol.
 *
 * LZMA2 (chunks): control byte 0x00 = end, 0x01/0x02 = uncompressed chunk with/without
 * dictionary reset, 0x80-0xFF = LZMA chunk where bits 5-6 say what to reset (0 nothing,
 * 1 state, 2 state + new properties, 3 everything incl. dictionary) and bits 0-4 are bits
 * 16-20 of (unpacked size - 1); then big-endian unpacked-1 (16 bits), packed-1 (16 bits) and,
 * for resets 2 and 3, the properties byte (pb * 5 + lp) * 9 + lc.
 */

/** Thrown for data that does not decode; the caller wraps it with the file's name. */
export class XzDataError extends Error {
  /** An error whose message says what is wrong with the data. */
  constructor(message: string) {
    super(message);
    this.name = "XzDataError";
  }
}

// Probability model layout (LZMA: 11-bit probabilities, all starting at one half).
const PROB_INIT = 1024;
const NUM_STATES = 12;
const POS_STATES_MAX = 16;
const IS_MATCH = 0;
const IS_REP = IS_MATCH + NUM_STATES * POS_STATES_MAX;
const IS_REP_G0 = IS_REP + NUM_STATES;
const IS_REP_G1 = IS_REP_G0 + NUM_STATES;
const IS_REP_G2 = IS_REP_G1 + NUM_STATES;
const IS_REP0_LONG = IS_REP_G2 + NUM_STATES;
const POS_SLOT = IS_REP0_LONG + NUM_STATES * POS_STATES_MAX; // 4 length states x 64
const SPEC_POS = POS_SLOT + 4 * 64; // distances of slots 4..13: 1 + 128 - 14 probabilities
const ALIGN = SPEC_POS + 115;
const LEN_CODER = ALIGN + 16;
// Within a length coder: choice, choice2, low[16][8], mid[16][8], high[256].
const LEN_CHOICE = 0;
const LEN_CHOICE2 = 1;
const LEN_LOW = 2;
const LEN_MID = LEN_LOW + POS_STATES_MAX * 8;
const LEN_HIGH = LEN_MID + POS_STATES_MAX * 8;
const LEN_SIZE = LEN_HIGH + 256;
const REP_LEN_CODER = LEN_CODER + LEN_SIZE;
const LITERAL = REP_LEN_CODER + LEN_SIZE;
const LITERAL_CODER_SIZE = 0x300;
/** LZMA2 caps lc + lp at 4. */
const LCLP_MAX = 4;
const NUM_PROBS = LITERAL + LITERAL_CODER_SIZE * (1 << LCLP_MAX);

const MATCH_LEN_MIN = 2;
const END_POS_MODEL_INDEX = 14;
const LIT_STATES = 7;

/** Decodes one LZMA2 stream (a block's compressed data) into a growable output. */
export class Lzma2Decoder {
  /** Output (and dictionary). May be replaced by a larger buffer while decoding. */
  out: Uint8Array;
  /** Bytes of `out` in use. */
  pos: number;

  readonly #probs = new Uint16Array(NUM_PROBS);
  #input: Uint8Array = new Uint8Array(0);
  #inPos = 0;
  #range = 0;
  #code = 0;
  // LZMA state
  #lc = 0;
  #lp = 0;
  #pb = 0;
  #state = 0;
  #rep0 = 0;
  #rep1 = 0;
  #rep2 = 0;
  #rep3 = 0;
  #dictStart = 0;
  #needDictReset = true;
  #needProps = true;

  constructor(out: Uint8Array, pos = 0) {
    this.out = out;
    this.pos = pos;
  }

  /** Makes room for `n` more output bytes (doubling), keeping what was written. */
  #reserve(n: number): void {
    const need = this.pos + n;
    if (need <= this.out.length) return;
    let size = Math.max(this.out.length * 2, 1 << 16);
    while (size < need) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.out.subarray(0, this.pos));
    this.out = bigger;
  }

  /**
   * Decodes the LZMA2 stream at `input[start...]` (up to `end`). Returns the input position
   * just after the end marker. Output goes to `out` from `pos` on.
   */
  decode(input: Uint8Array, start: number, end: number): number {
    this.#input = input;
    let p = start;
    this.#dictStart = this.pos;
    this.#needDictReset = true;
    this.#needProps = true;
    for (;;) {
      if (p >= end) throw new XzDataError("LZMA2 data ends without its end marker");
      const control = input[p++]!;
      if (control === 0x00) return p;
      if (control === 0x01 || control === 0x02) {
        if (p + 2 > end) throw new XzDataError("LZMA2 uncompressed chunk header is truncated");
        const size = ((input[p]! << 8) | input[p + 1]!) + 1;
        p += 2;
        if (control === 0x01) {
          this.#dictStart = this.pos;
          this.#needDictReset = false;
        } else if (this.#needDictReset) {
          throw new XzDataError("LZMA2 stream does not start with a dictionary reset");
        }
        if (p + size > end) throw new XzDataError("LZMA2 uncompressed chunk is truncated");
        this.#reserve(size);
        this.out.set(input.subarray(p, p + size), this.pos);
        this.pos += size;
        p += size;
        continue;
      }
      if (control < 0x80) throw new XzDataError(`LZMA2 control byte ${control} is invalid`);
      if (p + 4 > end) throw new XzDataError("LZMA2 chunk header is truncated");
      const unpacked = (((control & 0x1f) << 16) | (input[p]! << 8) | input[p + 1]!) + 1;
      const packed = ((input[p + 2]! << 8) | input[p + 3]!) + 1;
      p += 4;
      const reset = (control >>> 5) & 3;
      if (reset === 3) {
        this.#dictStart = this.pos;
        this.#needDictReset = false;
      } else if (this.#needDictReset) {
        throw new XzDataError("LZMA2 stream does not start with a dictionary reset");
      }
      if (reset >= 2) {
        if (p >= end) throw new XzDataError("LZMA2 chunk properties are truncated");
        this.#setProps(input[p++]!);
        this.#needProps = false;
      } else if (this.#needProps) {
        throw new XzDataError("LZMA2 chunk uses LZMA properties that were never set");
      }
      if (reset >= 1) this.#resetState();
      if (p + packed > end) throw new XzDataError("LZMA2 chunk is truncated");
      this.#reserve(unpacked);
      this.#initRange(p, p + packed);
      this.#decodeChunk(this.pos + unpacked);
      if (this.#inPos !== p + packed || this.#code !== 0) {
        throw new XzDataError(
          `LZMA2 chunk's compressed size (${packed}) does not match its content`,
        );
      }
      p += packed;
    }
  }

  #setProps(props: number): void {
    if (props > (4 * 5 + 4) * 9 + 8) throw new XzDataError(`LZMA properties ${props} are invalid`);
    this.#lc = props % 9;
    const rest = Math.floor(props / 9);
    this.#lp = rest % 5;
    this.#pb = Math.floor(rest / 5);
    if (this.#lc + this.#lp > LCLP_MAX) {
      throw new XzDataError(`LZMA2 properties have lc + lp > ${LCLP_MAX}`);
    }
  }

  #resetState(): void {
    this.#probs.fill(PROB_INIT);
    this.#state = 0;
    this.#rep0 =
      this.#rep1 =
      this.#rep2 =
      this.#rep3 =
        0;
  }

  #initRange(p: number, end: number): void {
    if (end - p < 5 || this.#input[p] !== 0) {
      throw new XzDataError("LZMA2 chunk's range coder does not start with a zero byte");
    }
    const inp = this.#input;
    this.#code = ((inp[p + 1]! << 24) | (inp[p + 2]! << 16) | (inp[p + 3]! << 8) | inp[p + 4]!) >>>
      0;
    this.#range = 0xffff_ffff;
    this.#inPos = p + 5;
  }

  /** Decodes one bit with probability `probs[i]` and adapts it. */
  #bit(i: number): number {
    const probs = this.#probs;
    const prob = probs[i]!;
    let range = this.#range;
    let code = this.#code;
    const bound = (range >>> 11) * prob;
    let bit: number;
    if (code < bound) {
      range = bound;
      probs[i] = prob + ((2048 - prob) >>> 5);
      bit = 0;
    } else {
      range -= bound;
      code -= bound;
      probs[i] = prob - (prob >>> 5);
      bit = 1;
    }
    if (range < 0x0100_0000) {
      range = (range * 256) >>> 0;
      code = ((code * 256) + (this.#input[this.#inPos++]! | 0)) >>> 0;
    }
    this.#range = range;
    this.#code = code;
    return bit;
  }

  /** Decodes `n` bits with fixed probability one half, most significant first. */
  #direct(n: number): number {
    let range = this.#range;
    let code = this.#code;
    let result = 0;
    for (let k = 0; k < n; k++) {
      range >>>= 1;
      let b = 0;
      if (code >= range) {
        code -= range;
        b = 1;
      }
      result = result * 2 + b;
      if (range < 0x0100_0000) {
        range = (range * 256) >>> 0;
        code = ((code * 256) + (this.#input[this.#inPos++]! | 0)) >>> 0;
      }
    }
    this.#range = range;
    this.#code = code;
    return result;
  }

  /** A bit-tree symbol of `n` bits, most significant first, over `probs[base + 1 ...]`. */
  #tree(base: number, n: number): number {
    let m = 1;
    for (let k = 0; k < n; k++) m = (m << 1) | this.#bit(base + m);
    return m - (1 << n);
  }

  /** A bit-tree symbol of `n` bits, least significant first. */
  #reverseTree(base: number, n: number): number {
    let m = 1;
    let sym = 0;
    for (let k = 0; k < n; k++) {
      const b = this.#bit(base + m);
      m = (m << 1) | b;
      sym |= b << k;
    }
    return sym;
  }

  /** A match length minus MATCH_LEN_MIN from the length coder at `base`. */
  #len(base: number, posState: number): number {
    if (this.#bit(base + LEN_CHOICE) === 0) return this.#tree(base + LEN_LOW + posState * 8, 3);
    if (this.#bit(base + LEN_CHOICE2) === 0) {
      return 8 + this.#tree(base + LEN_MID + posState * 8, 3);
    }
    return 16 + this.#tree(base + LEN_HIGH, 8);
  }

  /** A match distance minus one, for a match of length `len` + MATCH_LEN_MIN. */
  #distance(len: number): number {
    const lenState = len < 3 ? len : 3;
    const slot = this.#tree(POS_SLOT + lenState * 64, 6);
    if (slot < 4) return slot;
    const directBits = (slot >>> 1) - 1;
    let dist = (2 | (slot & 1)) * 2 ** directBits;
    if (slot < END_POS_MODEL_INDEX) {
      return dist + this.#reverseTree(SPEC_POS + dist - slot, directBits);
    }
    dist += this.#direct(directBits - 4) * 16;
    return dist + this.#reverseTree(ALIGN, 4);
  }

  /** Decodes LZMA symbols until the output reaches `limit` exactly. */
  #decodeChunk(limit: number): void {
    const out = this.out;
    const pbMask = (1 << this.#pb) - 1;
    const lpMask = (1 << this.#lp) - 1;
    const lc = this.#lc;
    const dictStart = this.#dictStart;
    let pos = this.pos;
    let state = this.#state;
    let rep0 = this.#rep0, rep1 = this.#rep1, rep2 = this.#rep2, rep3 = this.#rep3;
    while (pos < limit) {
      const rel = pos - dictStart;
      const posState = rel & pbMask;
      if (this.#bit(IS_MATCH + state * POS_STATES_MAX + posState) === 0) {
        // Literal, coded with the previous byte's top lc bits as context.
        const prev = rel > 0 ? out[pos - 1]! : 0;
        const base = LITERAL + LITERAL_CODER_SIZE * (((rel & lpMask) << lc) + (prev >>> (8 - lc)));
        let sym = 1;
        if (state >= LIT_STATES) {
          // After a match: the byte at rep0 guides the first bits while they agree.
          if (rep0 >= rel) throw new XzDataError("LZMA literal refers before the dictionary");
          let matchByte = out[pos - rep0 - 1]!;
          while (sym < 0x100) {
            const matchBit = (matchByte >>> 7) & 1;
            matchByte <<= 1;
            const b = this.#bit(base + ((1 + matchBit) << 8) + sym);
            sym = (sym << 1) | b;
            if (b !== matchBit) break;
          }
        }
        while (sym < 0x100) sym = (sym << 1) | this.#bit(base + sym);
        out[pos++] = sym & 0xff;
        state = state < 4 ? 0 : state < 10 ? state - 3 : state - 6;
        continue;
      }
      let len: number;
      if (this.#bit(IS_REP + state) === 0) {
        // Simple match: a new distance.
        len = this.#len(LEN_CODER, posState);
        state = state < LIT_STATES ? 7 : 10;
        rep3 = rep2;
        rep2 = rep1;
        rep1 = rep0;
        rep0 = this.#distance(len);
        if (rep0 === 0xffff_ffff) throw new XzDataError("LZMA2 chunk contains an end marker");
      } else {
        if (this.#bit(IS_REP_G0 + state) === 0) {
          if (this.#bit(IS_REP0_LONG + state * POS_STATES_MAX + posState) === 0) {
            // Short rep: one byte at distance rep0.
            if (rep0 >= rel) throw new XzDataError("LZMA match refers before the dictionary");
            state = state < LIT_STATES ? 9 : 11;
            out[pos] = out[pos - rep0 - 1]!;
            pos++;
            continue;
          }
        } else {
          let dist: number;
          if (this.#bit(IS_REP_G1 + state) === 0) {
            dist = rep1;
          } else {
            if (this.#bit(IS_REP_G2 + state) === 0) {
              dist = rep2;
            } else {
              dist = rep3;
              rep3 = rep2;
            }
            rep2 = rep1;
          }
          rep1 = rep0;
          rep0 = dist;
        }
        len = this.#len(REP_LEN_CODER, posState);
        state = state < LIT_STATES ? 8 : 11;
      }
      len += MATCH_LEN_MIN;
      if (rep0 >= rel) throw new XzDataError("LZMA match refers before the dictionary");
      if (len > limit - pos) throw new XzDataError("LZMA match runs past its LZMA2 chunk");
      let from = pos - rep0 - 1;
      const stop = pos + len;
      while (pos < stop) out[pos++] = out[from++]!;
    }
    this.pos = pos;
    this.#state = state;
    this.#rep0 = rep0;
    this.#rep1 = rep1;
    this.#rep2 = rep2;
    this.#rep3 = rep3;
  }
}
