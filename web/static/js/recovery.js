// The retry policy of a call that lost its media connection, and the
// words the page uses for each way a connection can fail. Both are pure:
// the call (call.js) owns the timers and the page (meeting.js) the banner.

// Tunables, shortened by the tests (the call reads them through its own
// overrides, as it does RATE_LIMITED_BUDGET_MS).
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_CAP_MS = 30000;
// A connection that stayed up this long counts as healthy: the next
// failure starts the back-off from the beginning again.
export const STABLE_MS = 30000;
// Attempts before the call stops on its own and offers "Try again".
export const MAX_ATTEMPTS = 10;
// Jitter spreads the retries of many pages that lost the same node.
export const JITTER = 0.2;

// Failure kinds, as the call reports them.
export const FAIL_LOST = 'lost'; // the WebSocket to the node closed
export const FAIL_ICE = 'ice'; // ICE/DTLS failed, or media never connected
export const FAIL_NODE_ERROR = 'node_error'; // the node sent an error message
export const FAIL_NEGOTIATION = 'negotiation'; // an offer/answer could not be applied
export const FAIL_OFFLINE = 'offline'; // the browser says it is offline
export const FAIL_JOIN = 'join'; // the control plane could not be reached
export const FAIL_TIMEOUT = 'timeout'; // media did not connect before the deadline

// Backoff computes the waits between attempts: base·2^n capped, each
// scaled by a random factor in [1-jitter, 1+jitter] (random is injectable
// so that tests get exact numbers).
export class Backoff {
  constructor({ baseMs = BACKOFF_BASE_MS, capMs = BACKOFF_CAP_MS, stableMs = STABLE_MS,
    maxAttempts = MAX_ATTEMPTS, jitter = JITTER, random = Math.random } = {}) {
    Object.assign(this, { baseMs, capMs, stableMs, maxAttempts, jitter, random });
    this.attempt = 0;
    this.upSince = 0;
  }

  // exhausted: the budget of attempts is spent.
  get exhausted() {
    return this.attempt >= this.maxAttempts;
  }

  // next counts one attempt and returns how long to wait before it.
  next() {
    const raw = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const f = 1 + this.jitter * (2 * this.random() - 1);
    return Math.max(0, Math.round(Math.min(this.capMs, raw * f)));
  }

  // connected notes that a connection came up at now.
  connected(now = Date.now()) {
    this.upSince = now;
  }

  // failed notes a failure at now: after a connection that stayed up for
  // stableMs the count starts again.
  failed(now = Date.now()) {
    if (this.upSince && now - this.upSince >= this.stableMs) this.attempt = 0;
    this.upSince = 0;
  }

  reset() {
    this.attempt = 0;
    this.upSince = 0;
  }
}

// failureMessage is the reason line the page shows for a failure
// {kind, detail}.
export function failureMessage(f) {
  const detail = (f?.detail ?? '').toString().trim();
  switch (f?.kind) {
    case FAIL_OFFLINE:
      return 'You are offline';
    case FAIL_ICE:
      return 'Could not reach the media server (network check failed)';
    case FAIL_TIMEOUT:
      return 'The media connection did not come up in time (network check failed)';
    case FAIL_NODE_ERROR:
      return `The media server reported an error: ${detail || 'no details'}`;
    case FAIL_NEGOTIATION:
      return `The media connection could not be set up: ${detail || 'negotiation failed'}`;
    case FAIL_JOIN:
      return `Could not reach the meeting service${detail ? `: ${detail}` : ''}`;
    case FAIL_LOST:
    default:
      return 'Lost the connection to the media server';
  }
}

// countdownText is the banner's line while a retry waits.
export function countdownText(msLeft) {
  return `Reconnecting… ${Math.max(0, Math.ceil(msLeft / 1000))} s`;
}
