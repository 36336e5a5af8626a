package web_test

import (
	"fmt"
	"testing"
	"time"
)

// remoteVideoJS is the node's id of the one remote camera track of a page,
// and whether the page's session knows it as a published track.
const remoteVideoJS = `((c) => { const tr = [...c.tracks.values()].find((t) => t.video)?.video;
	const id = tr ? c.session.nodeTrackID(tr) : '';
	return { id, known: c.session.tracks.has(id), asked: window.oakmeet.subscriptions() }; })(window.oakmeet.call)`

// foxInboundJS is the receiving side of the page's one remote video.
const foxInboundJS = `window.oakmeet.call.session.sub.getStats().then((r) => {
	for (const s of r.values()) if (s.type === 'inbound-rtp' && s.kind === 'video') return { w: s.frameWidth ?? 0, dec: s.framesDecoded ?? 0, drop: s.framesDropped ?? 0, keys: s.keyFramesDecoded ?? 0, pli: s.pliCount ?? 0, nack: s.nackCount ?? 0 };
	return { w: 0, dec: 0 }; })`

// TestFirefoxFollowsChromiumLayerSwitches: a Firefox page subscribes to a
// Chromium page's simulcast camera by the node's track id (not Firefox's
// own remote track id) and keeps decoding it as the node switches it from
// layer to layer and pauses and resumes it: the node rewrites the VP8
// PictureID and TL0PICIDX so that Firefox sees one continuous stream.
func TestFirefoxFollowsChromiumLayerSwitches(t *testing.T) {
	needFirefox(t)
	c, m := startMeeting(t)
	chrome := openPage(t, "chromium", joinURL(c, m, "Chris", "DE"))
	fox := newFirefoxPage(t, "firefox", firefoxOpts{})
	fox.navigate(joinURL(c, m, "Fiona", "DE"))
	t.Cleanup(func() {
		if t.Failed() {
			var s map[string]any
			fox.evalInto(foxInboundJS, &s)
			t.Logf("firefox inbound video at the failure: %v", s)
		}
	})
	waitPlaying(fox, 1, 60*time.Second)
	_ = chrome

	var track struct {
		ID    string
		Known bool
		Asked map[string]string
	}
	fox.waitJS(30*time.Second, "subscribed to the camera by the node's track id",
		`((v) => v.known && v.asked[v.id] !== undefined)(`+remoteVideoJS+`)`, `JSON.stringify(`+remoteVideoJS+`)`)
	fox.evalInto(remoteVideoJS, &track)

	type inbound struct{ W, Dec int }
	stats := func() inbound {
		var s inbound
		fox.evalInto(foxInboundJS, &s)
		return s
	}
	subscribe := func(layer string) {
		fox.evalInto(fmt.Sprintf(`(window.oakmeet.call.session.send({ type: 'subscribe', track_id: %q, layer: %q }), true)`, track.ID, layer), new(bool))
	}
	// decoding waits until the width satisfies cond and then 30 more
	// frames are decoded at such a width.
	decoding := func(what, cond string) inbound {
		t.Helper()
		fox.waitJS(60*time.Second, what, `(`+foxInboundJS+`).then((s) => s.dec > 0 && `+cond+`)`, `(`+foxInboundJS+`).then(JSON.stringify)`)
		s := stats()
		fox.waitJS(60*time.Second, what+", 30 frames on",
			fmt.Sprintf(`(%s).then((s) => %s && s.dec >= %d)`, foxInboundJS, cond, s.Dec+30), `(`+foxInboundJS+`).then(JSON.stringify)`)
		return stats()
	}

	subscribe("high")
	high := decoding("the high layer decoding", "s.w >= 640")
	subscribe("low")
	low := decoding("the low layer decoding after a switch down", fmt.Sprintf("s.w < %d", high.W))
	subscribe("high")
	decoding("a higher layer decoding after a switch up", fmt.Sprintf("s.w > %d", low.W))
	subscribe("off")
	paused := stats()
	fox.waitJS(30*time.Second, "the paused video stopping",
		fmt.Sprintf(`(%s).then((a) => new Promise((ok) => setTimeout(() => (%s).then((b) => ok(b.dec === a.dec)), 1500)))`, foxInboundJS, foxInboundJS), `(`+foxInboundJS+`).then(JSON.stringify)`)
	subscribe("low")
	decoding("the video decoding after a resume", fmt.Sprintf("s.w < %d && s.dec > %d", high.W, paused.Dec))
	fox.checkConsole()
}
