// Unit tests of the retry policy and the failure messages (recovery.js),
// run by TestJSUnitRecovery.

import { eq, runAll, test } from './testlib.js';
import {
  Backoff, FAIL_ICE, FAIL_JOIN, FAIL_LOST, FAIL_NEGOTIATION, FAIL_NODE_ERROR, FAIL_OFFLINE, FAIL_TIMEOUT,
  countdownText, failureMessage,
} from '/js/recovery.js';

const seq = (b, n) => Array.from({ length: n }, () => b.next()).join(',');

test('recovery: back-off doubles from the base and stops at the cap', () => {
  const b = new Backoff({ baseMs: 1000, capMs: 30000, jitter: 0, maxAttempts: 10 });
  eq(seq(b, 8), '1000,2000,4000,8000,16000,30000,30000,30000', 'waits');
  eq(b.attempt, 8, 'attempts counted');
  eq(b.exhausted, false, 'exhausted after 8 of 10');
  b.next();
  b.next();
  eq(b.exhausted, true, 'exhausted after 10 of 10');
});

test('recovery: jitter stays within its share and never passes the cap', () => {
  const lo = new Backoff({ baseMs: 1000, capMs: 5000, jitter: 0.2, random: () => 0 });
  eq(seq(lo, 4), '800,1600,3200,4000', 'lowest jitter');
  const hi = new Backoff({ baseMs: 1000, capMs: 5000, jitter: 0.2, random: () => 0.999999 });
  eq(seq(hi, 4), '1200,2400,4800,5000', 'highest jitter (capped)');
  const mid = new Backoff({ baseMs: 1000, capMs: 5000, jitter: 0.2 });
  for (let i = 0; i < 50; i++) {
    const raw = Math.min(5000, 1000 * 2 ** Math.min(i, 30));
    const w = mid.next();
    if (w < raw * 0.8 - 1 || w > Math.min(5000, raw * 1.2) + 1) throw new Error(`wait ${i}: ${w} outside ±20% of ${raw}`);
  }
});

test('recovery: a connection that stayed up resets the back-off, a short one does not', () => {
  const b = new Backoff({ baseMs: 10, capMs: 1000, stableMs: 5000, jitter: 0 });
  eq(seq(b, 3), '10,20,40', 'first run');
  b.connected(1000);
  b.failed(2000); // up 1 s: not stable
  eq(b.next(), 80, 'short connection keeps counting');
  b.connected(10000);
  b.failed(16000); // up 6 s: stable
  eq(b.attempt, 0, 'count reset');
  eq(b.next(), 10, 'starts over');
  b.next();
  b.reset();
  eq(b.next(), 10, 'reset starts over');
});

test('recovery: failures get the words the page shows', () => {
  eq(failureMessage({ kind: FAIL_LOST }), 'Lost the connection to the media server', 'lost');
  eq(failureMessage({ kind: FAIL_ICE }), 'Could not reach the media server (network check failed)', 'ice');
  eq(failureMessage({ kind: FAIL_OFFLINE }), 'You are offline', 'offline');
  eq(failureMessage({ kind: FAIL_NODE_ERROR, detail: 'bad_sdp: no m-line' }), 'The media server reported an error: bad_sdp: no m-line', 'node error');
  eq(failureMessage({ kind: FAIL_NEGOTIATION, detail: 'publish answer: x' }), 'The media connection could not be set up: publish answer: x', 'negotiation');
  eq(/network check failed/.test(failureMessage({ kind: FAIL_TIMEOUT })), true, 'timeout names the network check');
  eq(failureMessage({ kind: FAIL_JOIN, detail: 'Failed to fetch' }), 'Could not reach the meeting service: Failed to fetch', 'join');
  eq(failureMessage({ kind: 'something new' }), 'Lost the connection to the media server', 'unknown kind');
  eq(failureMessage(undefined), 'Lost the connection to the media server', 'nothing');
});

test('recovery: the countdown rounds up to whole seconds', () => {
  eq(countdownText(3000), 'Reconnecting… 3 s', '3 s');
  eq(countdownText(2001), 'Reconnecting… 3 s', 'just over 2 s');
  eq(countdownText(-5), 'Reconnecting… 0 s', 'past');
});

window.__unit = runAll();
