// MediaCrypto attaches the SFrame Worker to a PeerConnection's senders and
// receivers — RTCRtpScriptTransform where the browser has it, else the
// older encoded streams — and is the key sink of a group Member: it hands
// the Worker each epoch's sender key and receiver keys.

let nextID = 1;

// How long a new Worker has to answer before it is replaced, and how many
// are tried; a page can tune both (globalThis.oakmeetTuning).
const WORKER_READY_MS = 10000;
const WORKER_ATTEMPTS = 3;

const hasScriptTransform = () => typeof RTCRtpScriptTransform !== 'undefined';
const hasEncodedStreams = () => typeof RTCRtpSender !== 'undefined' && 'createEncodedStreams' in RTCRtpSender.prototype;

export class MediaCrypto {
  static available() {
    return hasScriptTransform() || hasEncodedStreams();
  }

  constructor() {
    this.useScript = hasScriptTransform();
    this.needsEncodedStreams = !this.useScript && hasEncodedStreams();
    this.requests = new Map();
    this.worker = null;
    this.attempt = 0;
    // Messages wait here until the Worker has evaluated its module: a
    // Worker that never gets there (a module fetch that failed or hung) is
    // replaced, and what it was sent must reach the one that replaces it.
    this.queue = [];
    this.isReady = false;
    this.closed = false;
    const tuning = globalThis.oakmeetTuning ?? {};
    this.readyMs = tuning.workerReadyMs ?? WORKER_READY_MS;
    this.attempts = tuning.workerAttempts ?? WORKER_ATTEMPTS;
    this.readyPromise = this.useScript || this.needsEncodedStreams ? new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
      this.spawn();
    }) : Promise.resolve();
    this.readyPromise.catch(() => {});
  }

  // ready resolves once the Worker runs and answers; attach must not be
  // called before. In Firefox an RTCRtpScriptTransform made before its
  // Worker's module has evaluated may never reach the Worker, and a sender
  // whose transform is not running sends nothing at all.
  ready() {
    return this.readyPromise;
  }

  spawn() {
    const attempt = ++this.attempt;
    const w = new Worker('/js/e2ee/worker.js', { type: 'module', name: 'oakmeet-sframe' });
    this.worker = w;
    const retry = (why) => {
      if (this.worker !== w || this.isReady || this.closed) return;
      clearTimeout(timer);
      w.terminate();
      if (attempt >= this.attempts) {
        console.error(`oakmeet: the media encryption Worker did not start (${why}) after ${attempt} attempts`);
        this.settle.reject(new Error(`The media encryption Worker did not start: ${why}`));
        return;
      }
      console.warn(`oakmeet: the media encryption Worker did not start (${why}); starting attempt ${attempt + 1}`);
      this.spawn();
    };
    const timer = setTimeout(() => retry(`no answer within ${this.readyMs} ms`), this.readyMs);
    w.addEventListener('error', (e) => {
      // An error event of a Worker that runs is a script error in it;
      // before that, its module did not load or evaluate.
      e.preventDefault?.();
      const what = [e.message, e.filename && `${e.filename}:${e.lineno}`].filter(Boolean).join(' at ') || 'its module did not load';
      if (this.isReady) console.error(`oakmeet: media encryption Worker: ${what}`);
      else retry(what);
    });
    w.addEventListener('messageerror', () => console.error('oakmeet: media encryption Worker: a message could not be deserialised'));
    w.addEventListener('message', (e) => {
      if (this.worker !== w) return;
      const m = e.data;
      if (m?.type === 'ready') {
        if (this.isReady) return;
        clearTimeout(timer);
        this.isReady = true;
        for (const q of this.queue) w.postMessage(q.message, q.transfer);
        this.queue = [];
        this.settle.resolve();
        return;
      }
      const done = this.requests.get(m.req);
      if (done) {
        this.requests.delete(m.req);
        done(m.stats);
      }
    });
    // Messages wait in the Worker until its module has set its handler, so
    // an answer proves the module evaluated and handles them.
    w.postMessage({ type: 'ping' });
  }

  post(message, transfer = []) {
    if (!this.worker) return;
    if (this.isReady) this.worker.postMessage(message, transfer);
    else this.queue.push({ message, transfer });
  }

  attach(endpoint, operation, kind, participant) {
    const id = nextID++;
    const options = { operation, kind, participant, id };
    if (this.useScript) {
      endpoint.transform = new RTCRtpScriptTransform(this.worker, options);
    } else {
      const { readable, writable } = endpoint.createEncodedStreams();
      this.post({ type: 'stream', options, readable, writable }, [readable, writable]);
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
    this.post({ type: 'sender', kid, baseKey });
  }

  addKey(kid, baseKey, participant) {
    this.post({ type: 'add', kid, baseKey, participant });
  }

  removeKey(kid) {
    this.post({ type: 'remove', kid });
  }

  // stats resolves to the Worker's counters per transform: operation, kind,
  // participant, frames passed and frames dropped by reason.
  stats() {
    if (!this.worker) return Promise.resolve([]);
    const req = nextID++;
    return new Promise((resolve) => {
      this.requests.set(req, resolve);
      this.post({ type: 'stats', req });
    });
  }

  close() {
    this.closed = true;
    this.worker?.terminate();
  }
}
