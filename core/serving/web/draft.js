// A large JPEG decoded the way the app decodes it: Pillow's draft mode, i.e. libjpeg-turbo decoding at 1/2, 1/4 or 1/8
// scale (core/images.py _decoding). No browser decodes that way: libjpeg-turbo makes each reduced block with a reduced
// inverse DCT (jidctred.c: the mean of each 2x2, 4x4 or 8x8 group of the full transform, in its own fixed-point
// arithmetic), and when the chroma is subsampled it scales the chroma up with a larger transform instead of
// upsampling it (jdmaster.c), then turns YCbCr into RGB with jdcolor.c's integer tables. This file does the same
// steps with the same arithmetic (ported from the IJG's libjpeg, as libjpeg-turbo keeps it), on the coefficients
// jpeg-js.js reads, so the page's pixels are Pillow's. Then, as the app does: the whole-factor box reduction
// (Pillow's reduce) when still twice the model's size, and the EXIF orientation.
import {parseJpeg} from './jpeg-js.js';

const CONST_BITS = 13, PASS1_BITS = 2;

// libjpeg's range limit after an IDCT (jdmaster.c prepare_range_limit_table): index (x & 1023) with x centred on 0.
const IDCT_LIMIT = new Uint8Array(1024);
for (let i = 0; i < 1024; i++) IDCT_LIMIT[i] = i < 128 ? i + 128 : i < 512 ? 255 : i < 896 ? 0 : i - 896;

const descale = (x, n) => (x + (1 << (n - 1))) >> n;

// jidctint.c jpeg_idct_islow: an 8x8 block to 8x8 samples.
function idct8(block, quant, out, stride, at, ws) {
  for (let c = 0; c < 8; c++) {
    const q = (r) => block[r * 8 + c] * quant[r * 8 + c];
    if (!block[8 + c] && !block[16 + c] && !block[24 + c] && !block[32 + c] && !block[40 + c] && !block[48 + c]
        && !block[56 + c]) {
      const dc = q(0) << PASS1_BITS;
      for (let r = 0; r < 8; r++) ws[r * 8 + c] = dc;
      continue;
    }
    const [t0, t1, t2, t3, t4, t5, t6, t7] = columnIslow(q(0), q(1), q(2), q(3), q(4), q(5), q(6), q(7), CONST_BITS);
    const n = CONST_BITS - PASS1_BITS;
    ws[c] = descale(t0, n); ws[56 + c] = descale(t7, n); ws[8 + c] = descale(t1, n); ws[48 + c] = descale(t6, n);
    ws[16 + c] = descale(t2, n); ws[40 + c] = descale(t5, n); ws[24 + c] = descale(t3, n); ws[32 + c] = descale(t4, n);
  }
  const n = CONST_BITS + PASS1_BITS + 3;
  for (let r = 0; r < 8; r++) {
    const w = r * 8, o = at + r * stride;
    if (!ws[w + 1] && !ws[w + 2] && !ws[w + 3] && !ws[w + 4] && !ws[w + 5] && !ws[w + 6] && !ws[w + 7]) {
      out.fill(IDCT_LIMIT[descale(ws[w], PASS1_BITS + 3) & 1023], o, o + 8);
      continue;
    }
    const t = columnIslow(ws[w], ws[w + 1], ws[w + 2], ws[w + 3], ws[w + 4], ws[w + 5], ws[w + 6], ws[w + 7], CONST_BITS);
    for (let k = 0; k < 8; k++) out[o + k] = IDCT_LIMIT[descale(t[k], n) & 1023];
  }
}

// One 1-D pass of jpeg_idct_islow on (dequantized) inputs x0..x7: its eight outputs before descaling.
function columnIslow(x0, x1, x2, x3, x4, x5, x6, x7, bits) {
  let z1 = (x2 + x6) * 4433;
  const tmp2e = z1 + x6 * -15137, tmp3e = z1 + x2 * 6270;
  const tmp0e = (x0 + x4) * (1 << bits), tmp1e = (x0 - x4) * (1 << bits);
  const tmp10 = tmp0e + tmp3e, tmp13 = tmp0e - tmp3e, tmp11 = tmp1e + tmp2e, tmp12 = tmp1e - tmp2e;
  let tmp0 = x7, tmp1 = x5, tmp2 = x3, tmp3 = x1;
  z1 = tmp0 + tmp3;
  let z2 = tmp1 + tmp2, z3 = tmp0 + tmp2, z4 = tmp1 + tmp3;
  const z5 = (z3 + z4) * 9633;
  tmp0 *= 2446; tmp1 *= 16819; tmp2 *= 25172; tmp3 *= 12299;
  z1 *= -7373; z2 *= -20995; z3 *= -16069; z4 *= -3196;
  z3 += z5; z4 += z5;
  tmp0 += z1 + z3; tmp1 += z2 + z4; tmp2 += z2 + z3; tmp3 += z1 + z4;
  return [tmp10 + tmp3, tmp11 + tmp2, tmp12 + tmp1, tmp13 + tmp0, tmp13 - tmp0, tmp12 - tmp1, tmp11 - tmp2, tmp10 - tmp3];
}

// jidctred.c jpeg_idct_4x4: an 8x8 block to the means of its 2x2 groups.
function idct4(block, quant, out, stride, at, ws) {
  const odd = (z1, z2, z3, z4) => [z1 * -1730 + z2 * 11893 + z3 * -17799 + z4 * 8697,
                                   z1 * -4176 + z2 * -4926 + z3 * 7373 + z4 * 20995];
  for (let c = 0; c < 8; c++) {
    if (c === 4) continue;
    const q = (r) => block[r * 8 + c] * quant[r * 8 + c];
    if (!block[8 + c] && !block[16 + c] && !block[24 + c] && !block[40 + c] && !block[48 + c] && !block[56 + c]) {
      const dc = q(0) << PASS1_BITS;
      ws[c] = dc; ws[8 + c] = dc; ws[16 + c] = dc; ws[24 + c] = dc;
      continue;
    }
    const t0 = q(0) * (1 << (CONST_BITS + 1));
    const t2 = q(2) * 15137 + q(6) * -6270;
    const tmp10 = t0 + t2, tmp12 = t0 - t2;
    const [o0, o2] = odd(q(7), q(5), q(3), q(1));
    const n = CONST_BITS - PASS1_BITS + 1;
    ws[c] = descale(tmp10 + o2, n); ws[24 + c] = descale(tmp10 - o2, n);
    ws[8 + c] = descale(tmp12 + o0, n); ws[16 + c] = descale(tmp12 - o0, n);
  }
  const n = CONST_BITS + PASS1_BITS + 3 + 1;
  for (let r = 0; r < 4; r++) {
    const w = r * 8, o = at + r * stride;
    if (!ws[w + 1] && !ws[w + 2] && !ws[w + 3] && !ws[w + 5] && !ws[w + 6] && !ws[w + 7]) {
      out.fill(IDCT_LIMIT[descale(ws[w], PASS1_BITS + 3) & 1023], o, o + 4);
      continue;
    }
    const t0 = ws[w] * (1 << (CONST_BITS + 1));
    const t2 = ws[w + 2] * 15137 + ws[w + 6] * -6270;
    const tmp10 = t0 + t2, tmp12 = t0 - t2;
    const [o0, o2] = odd(ws[w + 7], ws[w + 5], ws[w + 3], ws[w + 1]);
    out[o] = IDCT_LIMIT[descale(tmp10 + o2, n) & 1023];
    out[o + 3] = IDCT_LIMIT[descale(tmp10 - o2, n) & 1023];
    out[o + 1] = IDCT_LIMIT[descale(tmp12 + o0, n) & 1023];
    out[o + 2] = IDCT_LIMIT[descale(tmp12 - o0, n) & 1023];
  }
}

// jidctred.c jpeg_idct_2x2: an 8x8 block to the means of its 4x4 groups.
function idct2(block, quant, out, stride, at, ws) {
  const odd = (z7, z5, z3, z1) => z7 * -5906 + z5 * 6967 + z3 * -10426 + z1 * 29692;
  for (let c = 0; c < 8; c++) {
    if (c === 2 || c === 4 || c === 6) continue;
    const q = (r) => block[r * 8 + c] * quant[r * 8 + c];
    if (!block[8 + c] && !block[24 + c] && !block[40 + c] && !block[56 + c]) {
      const dc = q(0) << PASS1_BITS;
      ws[c] = dc; ws[8 + c] = dc;
      continue;
    }
    const tmp10 = q(0) * (1 << (CONST_BITS + 2));
    const tmp0 = odd(q(7), q(5), q(3), q(1));
    const n = CONST_BITS - PASS1_BITS + 2;
    ws[c] = descale(tmp10 + tmp0, n); ws[8 + c] = descale(tmp10 - tmp0, n);
  }
  const n = CONST_BITS + PASS1_BITS + 3 + 2;
  for (let r = 0; r < 2; r++) {
    const w = r * 8, o = at + r * stride;
    if (!ws[w + 1] && !ws[w + 3] && !ws[w + 5] && !ws[w + 7]) {
      out.fill(IDCT_LIMIT[descale(ws[w], PASS1_BITS + 3) & 1023], o, o + 2);
      continue;
    }
    const tmp10 = ws[w] * (1 << (CONST_BITS + 2));
    const tmp0 = odd(ws[w + 7], ws[w + 5], ws[w + 3], ws[w + 1]);
    out[o] = IDCT_LIMIT[descale(tmp10 + tmp0, n) & 1023];
    out[o + 1] = IDCT_LIMIT[descale(tmp10 - tmp0, n) & 1023];
  }
}

// jidctred.c jpeg_idct_1x1: the block's mean.
function idct1(block, quant, out, stride, at) {
  out[at] = IDCT_LIMIT[descale(block[0] * quant[0], 3) & 1023];
}

const IDCTS = {1: idct1, 2: idct2, 4: idct4, 8: idct8};

// jdcolor.c build_ycc_rgb_table: the integer YCbCr -> RGB tables (16 fraction bits, rounded).
const FIX16 = (x) => Math.floor(x * 65536 + 0.5);
const CR_R = new Int32Array(256), CB_B = new Int32Array(256), CR_G = new Int32Array(256), CB_G = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const x = i - 128;
  CR_R[i] = (FIX16(1.402) * x + 32768) >> 16;
  CB_B[i] = (FIX16(1.772) * x + 32768) >> 16;
  CR_G[i] = -FIX16(0.71414) * x;
  CB_G[i] = -FIX16(0.34414) * x + 32768;
}
const clamp = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

// jdsample.c: a component's samples brought to the output's resolution. Twice as wide or twice as tall is "fancy"
// (a 3:1 triangle filter, its edges repeated) when the scale allows (libjpeg-turbo: not at 1/8), repeated samples
// otherwise; null for the layouts not done here (both ways at once: 4:2:0 never needs it when scaled).
function upsample(samples, across, down, fancy) {
  if (across === 1 && down === 1) return samples;
  const {plane, stride, width, height} = samples;
  if (!Number.isInteger(across) || !Number.isInteger(down)) return null;
  const outStride = stride * across, out = new Uint8Array(outStride * height * down);
  if (fancy && across === 2 && down === 1 && width > 2) { // h2v1_fancy_upsample
    for (let y = 0; y < height; y++) {
      const i = y * stride, o = y * outStride;
      out[o] = plane[i];
      out[o + 1] = (plane[i] * 3 + plane[i + 1] + 2) >> 2;
      for (let x = 1; x < width - 1; x++) {
        const near = plane[i + x] * 3;
        out[o + 2 * x] = (near + plane[i + x - 1] + 1) >> 2;
        out[o + 2 * x + 1] = (near + plane[i + x + 1] + 2) >> 2;
      }
      const last = width - 1;
      out[o + 2 * last] = (plane[i + last] * 3 + plane[i + last - 1] + 1) >> 2;
      out[o + 2 * last + 1] = plane[i + last];
    }
    return {plane: out, stride: outStride};
  }
  if (fancy && across === 1 && down === 2) { // h1v2_fancy_upsample: the rows beyond the edges repeat the edge rows
    for (let y = 0; y < height; y++) {
      const near = y * stride, above = Math.max(y - 1, 0) * stride, below = Math.min(y + 1, height - 1) * stride;
      const top = 2 * y * outStride, bottom = top + outStride;
      for (let x = 0; x < width; x++) {
        out[top + x] = (plane[near + x] * 3 + plane[above + x] + 1) >> 2;
        out[bottom + x] = (plane[near + x] * 3 + plane[below + x] + 2) >> 2;
      }
    }
    return {plane: out, stride: outStride};
  }
  if (fancy && across === 2 && down === 2) return null;
  for (let y = 0; y < height * down; y++) { // h2v1_upsample, int_upsample: each sample repeated
    const i = Math.floor(y / down) * stride, o = y * outStride;
    for (let x = 0; x < stride * across; x++) out[o + x] = plane[i + Math.floor(x / across)];
  }
  return {plane: out, stride: outStride};
}

// Pillow's JpegImageFile.draft(mode, (width // factor, height // factor)): the libjpeg scale it asks for.
export function draftScale(width, height, factor) {
  const scale = Math.min(Math.floor(width / Math.floor(width / factor)), Math.floor(height / Math.floor(height / factor)));
  return [8, 4, 2, 1].find((s) => scale >= s);
}

// Width and height from a JPEG's frame header, without decoding it; null when there is none before the first scan.
export function jpegSize(bytes) {
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) return null;
    const marker = bytes[at + 1];
    if (marker === 0xff) { at += 1; continue; }
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return at + 9 <= bytes.length ? {height: (bytes[at + 5] << 8) | bytes[at + 6], width: (bytes[at + 7] << 8) | bytes[at + 8],
                                       sof: marker} : null;
    }
    if (marker === 0xda) return null;
    at += 2 + length;
  }
  return null;
}

// The JPEG decoded at 1/scale as libjpeg-turbo does with scale_denom = scale (islow, fancy upsampling, the library's
// defaults, which Pillow's draft mode keeps): {data: RGB bytes, width, height}, or null for a file this decoder does
// not match libjpeg on (arithmetic coding, 12-bit, CMYK or RGB-coded colour, chroma upsampled both ways at once).
export function decodeScaled(bytes, scale) {
  const jpeg = parseJpeg(bytes);
  const frame = jpeg.frame, components = jpeg.components;
  if (frame.precision !== 8 || ![1, 3].includes(components.length)) return null;
  if (components.length === 3) {
    const ids = components.map((c) => c.id);
    if ((jpeg.adobe && jpeg.adobe.transformCode === 0) || (!jpeg.jfif && !jpeg.adobe && ids.join() === '82,71,66')) {
      return null; // colour coded as RGB: libjpeg takes it as is
    }
  }
  const minSize = 8 / scale;
  const width = Math.ceil(frame.samplesPerLine / scale), height = Math.ceil(frame.scanLines / scale);
  const planes = [], ws = new Int32Array(64);
  for (const component of components) {
    // jdmaster.c: scale the chroma up by IDCT scaling, as far as both its ratios allow.
    let size = minSize;
    while (size < 8 && (frame.maxH * minSize) % (component.h * size * 2) === 0
           && (frame.maxV * minSize) % (component.v * size * 2) === 0) size *= 2;
    const rows = component.blocks.length, columns = component.blocks[0].length, stride = columns * size;
    const plane = new Uint8Array(stride * rows * size), idct = IDCTS[size], quant = component.quantizationTable;
    for (let r = 0; r < rows; r++) {
      const row = component.blocks[r];
      for (let c = 0; c < columns; c++) idct(row[c], quant, plane, stride, r * size * stride + c * size, ws);
    }
    const across = frame.maxH * minSize / (component.h * size), down = frame.maxV * minSize / (component.v * size);
    const samples = {plane, stride, width: Math.ceil(frame.samplesPerLine * component.h * size / (frame.maxH * 8)),
                     height: Math.ceil(frame.scanLines * component.v * size / (frame.maxV * 8))};
    const upsampled = upsample(samples, across, down, minSize > 1);
    if (!upsampled) return null;
    planes.push(upsampled);
  }
  const data = new Uint8Array(width * height * 3);
  if (planes.length === 1) {
    const {plane, stride} = planes[0];
    for (let y = 0, o = 0; y < height; y++) {
      for (let x = 0, i = y * stride; x < width; x++, i++, o += 3) data[o] = data[o + 1] = data[o + 2] = plane[i];
    }
  } else {
    const [Y, Cb, Cr] = planes;
    for (let y = 0, o = 0; y < height; y++) {
      for (let x = 0; x < width; x++, o += 3) {
        const luma = Y.plane[y * Y.stride + x], cb = Cb.plane[y * Cb.stride + x], cr = Cr.plane[y * Cr.stride + x];
        data[o] = clamp(luma + CR_R[cr]);
        data[o + 1] = clamp(luma + ((CB_G[cb] + CR_G[cr]) >> 16));
        data[o + 2] = clamp(luma + CB_B[cb]);
      }
    }
  }
  return {data, width, height, orientation: orientation(jpeg.exifBuffer)};
}

// The EXIF orientation (tag 0x0112 of the first IFD) as Pillow's getexif reads it; 1 when absent or unreadable.
export function orientation(tiff) {
  try {
    if (!tiff || tiff.length < 8) return 1;
    const little = tiff[0] === 0x49;
    const u16 = (at) => (little ? tiff[at] | (tiff[at + 1] << 8) : (tiff[at] << 8) | tiff[at + 1]);
    const u32 = (at) => (little ? (tiff[at] | (tiff[at + 1] << 8) | (tiff[at + 2] << 16)) + tiff[at + 3] * 2 ** 24
                                : ((tiff[at + 1] << 16) | (tiff[at + 2] << 8) | tiff[at + 3]) + tiff[at] * 2 ** 24);
    const ifd = u32(4), count = u16(ifd);
    for (let i = 0; i < count; i++) {
      const entry = ifd + 2 + i * 12;
      if (entry + 12 > tiff.length) break;
      if (u16(entry) === 0x0112) return u16(entry + 8);
    }
  } catch (error) { /* a broken EXIF block must not cost the photo */ }
  return 1;
}

// Pillow's Image.transpose for an EXIF orientation (core/images.py _upright), on RGB bytes.
export function upright({data, width, height}, orientation) {
  const source = {
    2: (x, y) => [width - 1 - x, y], 3: (x, y) => [width - 1 - x, height - 1 - y], 4: (x, y) => [x, height - 1 - y],
    5: (x, y) => [y, x], 6: (x, y) => [y, height - 1 - x], 7: (x, y) => [width - 1 - y, height - 1 - x],
    8: (x, y) => [width - 1 - y, x],
  }[orientation];
  if (!source) return {data, width, height};
  const [w, h] = orientation >= 5 ? [height, width] : [width, height];
  const out = new Uint8Array(w * h * 3);
  for (let y = 0, o = 0; y < h; y++) {
    for (let x = 0; x < w; x++, o += 3) {
      const [sx, sy] = source(x, y), i = (sy * width + sx) * 3;
      out[o] = data[i]; out[o + 1] = data[i + 1]; out[o + 2] = data[i + 2];
    }
  }
  return {data: out, width: w, height: h};
}
