// What this browser lacks for an end-to-end encrypted meeting. The join
// page asks before joining, so a browser that cannot encrypt says so in
// words rather than failing halfway into the call (or, worse, joining
// with media it cannot protect). Capabilities are tested, not inferred
// from the user agent: Chromium and Firefox reach SFrame by different APIs
// (encoded streams, RTCRtpScriptTransform), and WebCrypto's Ed25519 and
// X25519 arrived in browsers at different versions.

async function generates(algorithm, usages) {
  try {
    await crypto.subtle.generateKey(algorithm, false, usages);
    return true;
  } catch {
    return false;
  }
}

// missingForE2EE resolves to [] when the browser has everything E2EE
// needs, else to what it lacks, in words.
export async function missingForE2EE() {
  const missing = [];
  if (typeof RTCPeerConnection === 'undefined') missing.push('WebRTC (RTCPeerConnection)');
  const script = typeof RTCRtpScriptTransform !== 'undefined';
  const streams = typeof RTCRtpSender !== 'undefined' && 'createEncodedStreams' in RTCRtpSender.prototype;
  if (!script && !streams) missing.push('access to encoded media frames (RTCRtpScriptTransform or encoded streams)');
  if (typeof Worker === 'undefined') missing.push('Web Workers');
  if (!globalThis.crypto?.subtle) {
    missing.push('WebCrypto (the page must be served over HTTPS)');
    return missing;
  }
  const [ed, x] = await Promise.all([
    generates({ name: 'Ed25519' }, ['sign', 'verify']),
    generates({ name: 'X25519' }, ['deriveBits']),
  ]);
  if (!ed) missing.push('Ed25519 signatures in WebCrypto');
  if (!x) missing.push('X25519 key agreement in WebCrypto');
  return missing;
}

// unsupportedText is what the join page says when missing is not empty.
export function unsupportedText(missing) {
  return `This browser cannot join with end-to-end encryption: it lacks ${missing.join(', ')}. Use a current Chromium, Chrome, Edge or Firefox.`;
}
