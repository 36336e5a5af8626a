// MediaCrypto attaches the SFrame Worker to a PeerConnection's senders and
// receivers — RTCRtpScriptTransform where the browser has it, else the
// older encoded streams — and is the key sink of a group Member: it hands
// the Worker each epoch's sender key and receiver keys.

let nextID = 1;

const hasScriptTransform = () => typeof RTCRtpScriptTransform !== 'undefined';
const hasEncodedStreams = () => typeof RTCRtpSender !== 'undefined' && 'createEncodedStreams' in RTCRtpSender.prototype;

export class MediaCrypto {
  static available() {
    return hasScriptTransform() || hasEncodedStreams();
  }

  constructor() {
    this.useScript = hasScriptTransform();
    this.needsEncodedStreams = !this.useScript && hasEncodedStreams();
    this.worker = this.useScript || this.needsEncodedStreams ? new Worker('/js/e2ee/worker.js', { type: 'module', name: 'oakmeet-sframe' }) : null;
    this.requests = new Map();
    this.worker?.addEventListener('message', (e) => {
      const m = e.data;
      const done = this.requests.get(m.req);
      if (done) {
        this.requests.delete(m.req);
        done(m.stats);
      }
    });
  }

  attach(endpoint, operation, kind, participant) {
    const id = nextID++;
    const options = { operation, kind, participant, id };
    if (this.useScript) {
      endpoint.transform = new RTCRtpScriptTransform(this.worker, options);
    } else {
      const { readable, writable } = endpoint.createEncodedStreams();
      this.worker.postMessage({ type: 'stream', options, readable, writable }, [readable, writable]);
    }
    return id;
  }

  protectSender(sender, kind) {
    return this.attach(sender, 'encode', kind, '');
  }

  unprotectReceiver(receiver, kind, participant) {
    return this.attach(receiver, 'decode', kind, participant);
  }

  // The Member's key sink; setSender(null, null) stops sending.
  setSender(kid, baseKey) {
    this.worker?.postMessage({ type: 'sender', kid, baseKey });
  }

  addKey(kid, baseKey, participant) {
    this.worker?.postMessage({ type: 'add', kid, baseKey, participant });
  }

  removeKey(kid) {
    this.worker?.postMessage({ type: 'remove', kid });
  }

  // stats resolves to the Worker's counters per transform: operation, kind,
  // participant, frames passed and frames dropped by reason.
  stats() {
    if (!this.worker) return Promise.resolve([]);
    const req = nextID++;
    return new Promise((resolve) => {
      this.requests.set(req, resolve);
      this.worker.postMessage({ type: 'stats', req });
    });
  }

  close() {
    this.worker?.terminate();
  }
}
