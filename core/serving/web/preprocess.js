// The pixels TransferLab's model sees, made in the browser exactly as the app makes them (core/images.py load_rgb):
// a photo file is decoded upright with its alpha over white and shrunk by a whole factor (1, 2, 4 or 8: the largest
// that keeps both sides at least the model's size); a JPEG is decoded at that reduced scale the way libjpeg-turbo does
// it for Pillow (draft.js), and again shrunk when still twice the size or more. Then its centre square is resized to
// size x size with Pillow's bilinear filter, in Pillow's fixed-point arithmetic. Camera frames skip the whole-factor
// steps, as in the app.
// Returns RGB bytes, size * size * 3.
import {decodeScaled, draftScale, jpegSize, upright} from './draft.js';

const PRECISION_BITS = 22; // Pillow's Resample.c for 8-bit images: 32 - 8 - 2

export async function photoPixels(blob, size) {
  const jpeg = await isJpeg(blob);
  const drafted = jpeg ? await draftDecoded(blob, size) : null;
  if (drafted) return resizeSquare(drafted, size);
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'default'});
  try {
    let rgb = {data: rgbOverWhite(bitmap, bitmap.width, bitmap.height), width: bitmap.width, height: bitmap.height};
    rgb = reduce(rgb, keepingFactor(rgb.width, rgb.height, size));
    if (jpeg) rgb = reduce(rgb, keepingFactor(rgb.width, rgb.height, size));
    return resizeSquare(rgb, size);
  } finally {
    bitmap.close();
  }
}

// A JPEG the app decodes at reduced scale, decoded the same way, reduced and turned upright as the app does; null
// when the app decodes it whole (the browser's decoder gives the same pixels then) or draft.js cannot match libjpeg
// on it.
async function draftDecoded(blob, size) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const frame = jpegSize(bytes);
  if (!frame || frame.sof > 0xc2) return null; // only the Huffman-coded 8-bit kinds jpeg-js reads
  const factor = keepingFactor(frame.width, frame.height, size);
  if (factor === 1) return null;
  let decoded;
  try {
    decoded = decodeScaled(bytes, draftScale(frame.width, frame.height, factor));
  } catch (error) {
    return null; // let the browser try (a damaged file the app may still reject)
  }
  if (!decoded) return null;
  const reduced = reduce(decoded, keepingFactor(decoded.width, decoded.height, size));
  return upright(reduced, decoded.orientation);
}

async function isJpeg(blob) {
  const head = new Uint8Array(await blob.slice(0, 3).arrayBuffer());
  return head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff;
}

// A camera frame: `source` is anything a canvas can draw (a playing <video>).
export function framePixels(source, width, height, size) {
  return resizeSquare({data: rgbOverWhite(source, width, height), width, height}, size);
}

export function keepingFactor(width, height, size) {
  const most = Math.floor(Math.min(width, height) / Math.max(size, 1));
  return [8, 4, 2].find((s) => most >= s) || 1;
}

export function squareBox(width, height) {
  const side = Math.min(width, height);
  const left = Math.floor((width - side) / 2), top = Math.floor((height - side) / 2);
  return [left, top, left + side, top + side];
}

function rgbOverWhite(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d', {willReadFrequently: true, colorSpace: 'srgb'});
  context.fillStyle = '#fff';
  context.fillRect(0, 0, width, height);
  context.drawImage(source, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height, {colorSpace: 'srgb'}).data;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
  }
  return rgb;
}

// Pillow's Image.reduce: the mean of each factor x factor block (partial blocks at the edges too), rounded, dividing
// as Reduce.c does: times a float32 reciprocal, which is a level short at times for the edges' partial blocks.
function divider(count) {
  return Math.floor(Math.fround(4294967296 / (256 * count)));
}

function reduce({data, width, height}, factor) {
  if (factor === 1) return {data, width, height};
  const w = Math.ceil(width / factor), h = Math.ceil(height / factor);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const y0 = y * factor, y1 = Math.min(y0 + factor, height);
    for (let x = 0; x < w; x++) {
      const x0 = x * factor, x1 = Math.min(x0 + factor, width);
      const count = (y1 - y0) * (x1 - x0);
      let r = 0, g = 0, b = 0;
      for (let yy = y0; yy < y1; yy++) {
        for (let xx = x0, i = (yy * width + x0) * 3; xx < x1; xx++, i += 3) {
          r += data[i]; g += data[i + 1]; b += data[i + 2];
        }
      }
      const o = (y * w + x) * 3;
      const amend = count >> 1, times = divider(count);
      out[o] = Math.floor(((r + amend) * times) / 16777216);
      out[o + 1] = Math.floor(((g + amend) * times) / 16777216);
      out[o + 2] = Math.floor(((b + amend) * times) / 16777216);
    }
  }
  return {data: out, width: w, height: h};
}

// Pillow's precompute_coeffs with the bilinear (triangle) filter, then normalize_coeffs_8bpc.
function coefficients(inSize, in0, in1, outSize) {
  const scale = (in1 - in0) / outSize, filterScale = Math.max(scale, 1), support = filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2), weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterScale; // Pillow multiplies by the reciprocal: dividing rounds differently, a level apart at times
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5), xmax = Math.trunc(center + support + 0.5);
    if (xmin < 0) xmin = 0;
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      k[x] = t < 1 ? 1 - t : 0;
      total += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = total !== 0 ? k[x] / total : k[x];
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS))
                                      : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return {bounds, weights, ksize};
}

function clip8(value) {
  const v = Math.floor(value / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

// Image.resize((size, size), BILINEAR, box=square) as Pillow 13 does it. Its passes round to 8 bits in between, so
// their order shows: Pillow makes the vertical pass first when it shrinks the picture's height and the height is more
// than 2 * width - size, the horizontal pass first otherwise (measured on Pillow 13.0 at sizes 224 and 260, 57 to 600
// pixels wide, on both sides of each threshold). The vertical-first result is the horizontal-first one of the picture
// turned on its diagonal.
function resizeSquare(image, size) {
  if (image.height > size && image.height - size > 2 * (image.width - size)) {
    return transposed({data: resizeHorizontalFirst(transposed(image).data, image.height, image.width, size),
                       width: size, height: size}).data;
  }
  return resizeHorizontalFirst(image.data, image.width, image.height, size);
}

function transposed({data, width, height}) {
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0, i = y * width * 3; x < width; x++, i += 3) {
      const o = (x * height + y) * 3;
      out[o] = data[i]; out[o + 1] = data[i + 1]; out[o + 2] = data[i + 2];
    }
  }
  return {data: out, width: height, height: width};
}

// The resize as ImagingResampleInner does it: horizontal pass first, over the rows the vertical pass will read,
// rounded to 8 bits, then the vertical pass.
function resizeHorizontalFirst(data, width, height, size) {
  const [left, top, right, bottom] = squareBox(width, height);
  const horizontal = coefficients(width, left, right, size);
  const vertical = coefficients(height, top, bottom, size);
  const needHorizontal = size !== width || left !== 0 || right !== size;
  const needVertical = size !== height || top !== 0 || bottom !== size;
  const half = 1 << (PRECISION_BITS - 1);
  let image = {data, width, height};
  let rowBounds = vertical.bounds;
  if (needHorizontal) {
    const first = vertical.bounds[0];
    const last = vertical.bounds[size * 2 - 2] + vertical.bounds[size * 2 - 1];
    rowBounds = vertical.bounds.map((v, i) => (i % 2 === 0 ? v - first : v));
    const rows = last - first, out = new Uint8Array(size * rows * 3);
    for (let y = 0; y < rows; y++) {
      const row = (y + first) * width * 3;
      for (let x = 0; x < size; x++) {
        const xmin = horizontal.bounds[x * 2], xmax = horizontal.bounds[x * 2 + 1], k = x * horizontal.ksize;
        let r = half, g = half, b = half;
        for (let i = 0; i < xmax; i++) {
          const p = row + (xmin + i) * 3, w = horizontal.weights[k + i];
          r += data[p] * w; g += data[p + 1] * w; b += data[p + 2] * w;
        }
        const o = (y * size + x) * 3;
        out[o] = clip8(r); out[o + 1] = clip8(g); out[o + 2] = clip8(b);
      }
    }
    image = {data: out, width: size, height: rows};
  }
  if (!needVertical) return image.data;
  const out = new Uint8Array(size * size * 3), src = image.data, w = image.width;
  for (let y = 0; y < size; y++) {
    const ymin = rowBounds[y * 2], ymax = rowBounds[y * 2 + 1], k = y * vertical.ksize;
    for (let x = 0; x < w; x++) {
      let r = half, g = half, b = half;
      for (let i = 0; i < ymax; i++) {
        const p = ((ymin + i) * w + x) * 3, weight = vertical.weights[k + i];
        r += src[p] * weight; g += src[p + 1] * weight; b += src[p + 2] * weight;
      }
      const o = (y * w + x) * 3;
      out[o] = clip8(r); out[o + 1] = clip8(g); out[o + 2] = clip8(b);
    }
  }
  return out;
}
