// Unit tests of the meeting layout (web/static/js/layout.js).

import { HOLD_MS, layout } from '/js/layout.js';
import { eq, test } from './testlib.js';

const cams = (n) => Array.from({ length: n }, (_, i) => ({ id: i === 0 ? 'self' : `p${i}`, kind: 'camera', self: i === 0, lastSpoke: 0, joinedSeq: i }));

test('layout: up to four tiles is a grid of all', () => {
  const l = layout({ tiles: cams(4) });
  eq(l.mode, 'grid', 'mode');
  eq(l.visible.length, 4, 'visible');
  eq(l.large, null, 'large');
});

test('layout: more than four puts the active speaker large, never self', () => {
  const t = cams(6);
  t[0].lastSpoke = 900; // self spoke last: still not large
  t[3].lastSpoke = 500;
  const l = layout({ tiles: t, now: 1000 });
  eq(l.mode, 'speaker', 'mode');
  eq(l.large, 'p3', 'large');
  eq(l.visible.includes('self'), true, 'self shown small');
  eq(l.strip.includes('p3'), false, 'large not in the strip');
});

test('layout: the speaker is held against flapping', () => {
  const t = cams(6);
  t[2].lastSpoke = 100;
  const a = layout({ tiles: t, now: 100 });
  eq(a.large, 'p2', 'first speaker');
  t[4].lastSpoke = 600;
  const b = layout({ tiles: t, now: 600, prev: a });
  eq(b.large, 'p2', 'held within the hold time');
  const c = layout({ tiles: t, now: 100 + HOLD_MS + 1, prev: b });
  eq(c.large, 'p4', 'replaced after the hold time');
});

test('layout: the newest screen share wins', () => {
  const t = cams(6);
  t[1].lastSpoke = 999;
  t.push({ id: 'screen:p2', kind: 'screen', self: false, lastSpoke: 0, joinedSeq: 10 });
  t.push({ id: 'screen:p5', kind: 'screen', self: false, lastSpoke: 0, joinedSeq: 11 });
  const l = layout({ tiles: t, now: 1000 });
  eq(l.large, 'screen:p5', 'large');
  eq(l.visible.includes('screen:p2') || l.strip.includes('screen:p2') || l.pages > 1, true, 'the other share is paged');
});

test('layout: pages of the strip, sized to the viewport', () => {
  const t = cams(12); // self, p1 large (by join order), 10 others
  const desk = layout({ tiles: t, w: 1280, h: 800 });
  eq(desk.strip.length, 9, 'desktop page');
  eq(desk.pages, 2, 'desktop pages');
  const last = layout({ tiles: t, w: 1280, h: 800, page: 5 });
  eq(last.page, 1, 'page clamped');
  eq(last.strip.length, 1, 'last page');
  const phone = layout({ tiles: t, w: 390, h: 800 });
  eq(phone.strip.length, 3, 'phone page');
  eq(phone.pages, 4, 'phone pages');
  eq(phone.visible.length, 5, 'phone visible: large, 3, self');
});

test('layout: a screen share is large even in a small meeting, another\'s before one\'s own', () => {
  const t = cams(2);
  t.push({ id: 'screen:self', kind: 'screen', self: true, lastSpoke: 0, joinedSeq: 5 });
  const own = layout({ tiles: t });
  eq(own.mode, 'speaker', 'mode with a share');
  eq(own.large, 'screen:self', 'the only share is large');
  t.push({ id: 'screen:p1', kind: 'screen', self: false, lastSpoke: 0, joinedSeq: 4 });
  const l = layout({ tiles: t });
  eq(l.large, 'screen:p1', "someone else's share before one's own");
  eq(l.visible.includes('p1') && l.visible.includes('self'), true, 'the cameras stay shown');
});
