// UTF-8 by hand, so the SDK runs on both engines apps are compiled with:
// QuickJS has no TextEncoder or TextDecoder.

/** The UTF-8 bytes of a string (lone surrogates become U+FFFD). */
export function encode(text) {
  const out = [];
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

/** The string UTF-8 `bytes` spell; malformed sequences become U+FFFD. */
export function decode(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    const len = b < 0x80 ? 1 : b >= 0xf0 && b < 0xf8 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
    let c = len === 1 ? b : len === 0 ? -1 : b & (0xff >> (len + 1));
    for (let k = 1; k < len; k++) {
      const next = bytes[i + k];
      if (next === undefined || (next & 0xc0) !== 0x80) {
        c = -1;
        break;
      }
      c = (c << 6) | (next & 63);
    }
    const overlong = (len === 2 && c < 0x80) || (len === 3 && c < 0x800) || (len === 4 && c < 0x10000);
    if (c < 0 || overlong || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
      text += "\ufffd";
      i += 1;
      continue;
    }
    text += String.fromCodePoint(c);
    i += len;
  }
  return text;
}
