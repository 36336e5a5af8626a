package web_test

import (
	"fmt"
	"testing"
	"time"
)

// inboundVideoJS measures, over one second, the remote camera video this page
// receives: the largest frame width and the bitrate in kbit/s.
const inboundVideoJS = `(async () => {
  const pc = window.oakmeet.call.session.sub;
  const sample = async () => {
    let bytes = 0, width = 0;
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') { bytes += r.bytesReceived; width = Math.max(width, r.frameWidth || 0); }
    });
    return { bytes, width, at: performance.now() };
  };
  const a = await sample();
  await new Promise((r) => setTimeout(r, 1000));
  const b = await sample();
  return JSON.stringify({ width: b.width, kbps: Math.round((b.bytes - a.bytes) * 8 / (b.at - a.at)) });
})()`

// TestPageSimulcastLayersDecrypt: a page publishes its camera in three
// layers; the receiver asks the node for the low, then the high layer, and
// the measured frame width follows while every frame still decrypts.
func TestPageSimulcastLayersDecrypt(t *testing.T) {
	c, m := startMeeting(t)
	pages := openPages(t, "ann", joinURL(c, m, "Ann", "DE"), "bob", joinURL(c, m, "Bob", "DE"))
	ann, bob := pages[0], pages[1]
	waitTogether(t, ann, bob)

	ann.waitJS(60*time.Second, "three camera layers sent",
		`window.oakmeet.call.session.pub.getStats().then((s) => { let n = 0; s.forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'video' && r.rid && r.bytesSent > 0) n++; }); return n === 3; })`,
		`window.oakmeet.call.session.pub.getStats().then((s) => { const o = []; s.forEach((r) => { if (r.type === 'outbound-rtp') o.push([r.kind, r.rid, r.bytesSent, r.frameWidth]); }); return JSON.stringify(o); })`)

	// The page asks for a layer by the size of ann's tile; wait for that
	// so the layers asked for below are not overtaken by it.
	bob.waitJS(60*time.Second, "bob asks for ann's video by its tile size",
		`Object.values(window.oakmeet.subscriptions()).some((l) => ['low', 'medium', 'high'].includes(l))`,
		`JSON.stringify(window.oakmeet.subscriptions())`)
	ask := func(layer string) {
		evalJS[bool](bob, `(() => { const s = window.oakmeet.call.session;
  for (const r of s.sub.getReceivers()) if (r.track?.kind === 'video') s.send({ type: 'subscribe', track_id: r.track.id, layer: '`+layer+`' });
  return true; })()`)
	}
	ask("low")
	bob.waitJS(60*time.Second, "the low layer arrives",
		inboundVideoJS+`.then((j) => { const s = JSON.parse(j); return s.width > 0 && s.width <= 320; })`, inboundVideoJS)
	ask("high")
	bob.waitJS(60*time.Second, "the high layer arrives",
		inboundVideoJS+`.then((j) => JSON.parse(j).width >= 640)`, inboundVideoJS)
	before := bob.decryptStats()
	bob.waitJS(60*time.Second, "more frames decrypt on the high layer",
		fmt.Sprintf("%s.then((j) => JSON.parse(j).video > %d)", decryptStatsJS, before.Video+30), decryptStatsJS)
	if s := bob.decryptStats(); s.Failures != 0 {
		t.Errorf("bob: %d decrypt failures over the layer switches:%s", s.Failures, s.Detail)
	}
	ann.checkConsole()
	bob.checkConsole()
}

// TestSmallTileGetsLowerLayer: the receiver asks for the layer that fits the
// tile it shows; a small tile receives the low layer, a large one the high
// layer, as measured by what arrives.
func TestSmallTileGetsLowerLayer(t *testing.T) {
	c, m := startMeeting(t)
	pages := openPages(t, "ann", joinURL(c, m, "Ann", "DE"), "bob", joinURL(c, m, "Bob", "DE"))
	ann, bob := pages[0], pages[1]
	waitTogether(t, ann, bob)
	size := func(w int) {
		evalJS[bool](bob, fmt.Sprintf(`(() => { for (const el of document.querySelectorAll('.tile[data-participant]:not([data-participant=self])')) { el.style.width = '%dpx'; el.style.maxWidth = 'none'; } return true; })()`, w))
	}
	size(200)
	bob.waitJS(60*time.Second, "a 200 px tile gets the low layer",
		inboundVideoJS+`.then((j) => { const s = JSON.parse(j); return s.width > 0 && s.width <= 320 && s.kbps <= 250; })`,
		`JSON.stringify(window.oakmeet.subscriptions()) + ' ' + document.querySelector('.tile[data-participant]:not([data-participant=self])').getBoundingClientRect().width`)
	size(700)
	bob.waitJS(60*time.Second, "a 700 px tile gets the high layer",
		inboundVideoJS+`.then((j) => JSON.parse(j).width >= 640)`,
		`JSON.stringify(window.oakmeet.subscriptions()) + ' ' + document.querySelector('.tile[data-participant]:not([data-participant=self])').getBoundingClientRect().width`)
	if s := bob.decryptStats(); s.Video == 0 || s.Failures != 0 {
		t.Errorf("bob: %d video frames, %d decrypt failures:%s", s.Video, s.Failures, s.Detail)
	}
}
