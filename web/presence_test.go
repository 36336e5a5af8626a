package web_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// pidOfJS is, in a page, the participant id of the other participant
// shown as %s.
const pidOfJS = `([...window.oakmeet.call.participants.values()].find((p) => p.name === %s)?.id ?? '')`

// tileJS is, in a page, the camera tile of participant %s.
const tileJS = `document.querySelector('.tile[data-participant="' + %s + '"]')`

// pidOf is the participant id page b shows for the participant named name.
func pidOf(b *browser, name string) string {
	b.t.Helper()
	b.waitJS(30*time.Second, name+" in the participants", fmt.Sprintf(pidOfJS, jsString(name))+` !== ''`, `JSON.stringify([...window.oakmeet.call.participants.values()])`)
	return evalJS[string](b, fmt.Sprintf(pidOfJS, jsString(name)))
}

// tileAttrs is what page b's tile of pid says of mic, camera and hand.
func tileAttrs(b *browser, pid string) string {
	return evalJS[string](b, fmt.Sprintf(`((t) => t ? JSON.stringify({mic: t.dataset.mic, camera: t.dataset.camera, hand: t.dataset.hand}) : 'no tile')(%s)`, fmt.Sprintf(tileJS, jsString(pid))))
}

// waitTile waits until page b's tile of pid satisfies cond (an expression
// of t, the tile element).
func waitTile(b *browser, pid, what, cond string) {
	b.t.Helper()
	b.waitJS(30*time.Second, what, fmt.Sprintf(`((t) => !!t && (%s))(%s)`, cond, fmt.Sprintf(tileJS, jsString(pid))),
		fmt.Sprintf(`((t) => t ? t.outerHTML.slice(0, 300) : 'no tile')(%s) + ' presence ' + JSON.stringify([...window.oakmeet.call.presence])`, fmt.Sprintf(tileJS, jsString(pid))))
}

// TestMuteShowsOnOthersWithinOneSecond: Zed's microphone, camera and hand,
// as Zed's own page sets them, show on Bob's and Cat's tiles of Zed within
// a second of the click, signed end to end (only verified presence counts);
// unmuting clears the mark, and People lists the raised hand first.
func TestMuteShowsOnOthersWithinOneSecond(t *testing.T) {
	c, m := startMeeting(t)
	pages := openPages(t, "zed", joinURL(c, m, "Zed", "DE"), "bob", joinURL(c, m, "Bob", "DE"), "cat", joinURL(c, m, "Cat", "DE"))
	zed, bob, cat := pages[0], pages[1], pages[2]
	waitTogether(t, zed, bob, cat)
	others := []*browser{bob, cat}
	pids := map[*browser]string{}
	for _, b := range others {
		pids[b] = pidOf(b, "Zed")
		// Zed's first presence (sent on joining): microphone and camera on,
		// and so nothing marked.
		b.waitJS(30*time.Second, "Zed's first presence", fmt.Sprintf(`window.oakmeet.call.presence.get(%s)?.mic === true`, jsString(pids[b])), `JSON.stringify([...window.oakmeet.call.presence])`)
		if got := tileAttrs(b, pids[b]); got != `{}` {
			t.Errorf("%s: Zed's tile before any change: %s", b.name, got)
		}
	}

	// Each observer notes when the tile first gets data-mic="off", in
	// wall-clock milliseconds (performance.timeOrigin + now), comparable
	// across the pages of one machine.
	for _, b := range others {
		evalJS[bool](b, fmt.Sprintf(`((pid) => {
			window.__micOffAt = 0;
			const seen = () => { if (!window.__micOffAt && %s?.dataset.mic === 'off') window.__micOffAt = performance.timeOrigin + performance.now(); };
			new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-mic']});
			return true;
		})(%s)`, fmt.Sprintf(tileJS, "pid"), jsString(pids[b])))
	}
	clickedAt := evalJS[float64](zed, `(() => { const t = performance.timeOrigin + performance.now(); document.querySelector('[data-testid=mic]').click(); return t; })()`)
	for _, b := range others {
		waitTile(b, pids[b], "Zed's tile muted", `t.dataset.mic === 'off' && !t.querySelector('.tile-muted').hidden`)
		b.waitJS(30*time.Second, "the time of the mute noted", `window.__micOffAt > 0`, `window.__micOffAt`)
		shown := evalJS[float64](b, `window.__micOffAt`)
		latency := shown - clickedAt
		t.Logf("%s: Zed's mute shown %.0f ms after the click", b.name, latency)
		if latency > 1000 || latency < 0 {
			t.Errorf("%s: Zed's mute shown %.0f ms after the click, want at most 1000 ms", b.name, latency)
		}
	}
	evalJS[bool](zed, `(document.querySelector('[data-testid=mic]').click(), true)`)
	for _, b := range others {
		waitTile(b, pids[b], "Zed's tile unmuted", `t.dataset.mic === undefined && t.querySelector('.tile-muted').hidden`)
	}

	evalJS[bool](zed, `(document.querySelector('[data-testid=camera]').click(), true)`)
	for _, b := range others {
		waitTile(b, pids[b], "Zed's tile with the camera off", `t.dataset.camera === 'off' && t.classList.contains('no-video') && t.dataset.mic === undefined`)
	}

	evalJS[bool](zed, `(document.querySelector('[data-testid=raise-hand]').click(), true)`)
	zed.waitJS(30*time.Second, "the raise-hand button pressed", `document.querySelector('[data-testid=raise-hand]').getAttribute('aria-pressed') === 'true'`, `document.querySelector('[data-testid=raise-hand]').outerHTML`)
	for _, b := range others {
		waitTile(b, pids[b], "Zed's hand on the tile", `t.dataset.hand === 'up' && !t.querySelector('[data-testid=hand]').hidden`)
		// Without the hand Zed would come last (after Bob or Cat by name).
		b.waitJS(30*time.Second, "Zed's hand first in People", fmt.Sprintf(`((li) => li.length === 3 && li[1].dataset.participant === %s && li[1].dataset.hand === 'up' && !!li[1].querySelector('[data-testid=person-hand]'))([...document.querySelectorAll('[data-testid=roster] li')])`, jsString(pids[b])),
			`[...document.querySelectorAll('[data-testid=roster] li')].map((li) => li.dataset.participant + ':' + (li.dataset.hand ?? '') + ':' + li.textContent).join(' | ')`)
	}
	evalJS[bool](zed, `(document.querySelector('[data-testid=raise-hand]').click(), true)`)
	for _, b := range others {
		waitTile(b, pids[b], "Zed's hand lowered", `t.dataset.hand === undefined && t.querySelector('[data-testid=hand]').hidden`)
	}
	for _, b := range pages {
		// A copy that came twice is harmless; anything else is a fault.
		if d := evalJS[string](b, `JSON.stringify(Object.entries(window.oakmeet.call.ownPresence.drops).filter(([k]) => k !== 'duplicate'))`); d != `[]` {
			t.Errorf("%s: presence messages dropped in an honest meeting: %s", b.name, d)
		}
		b.checkConsole()
	}
}

// injectJS hands page b a node relay message, from %s with payload %s,
// through the path the node's own arrive by (NodeSession.handle).
const injectJS = `(window.oakmeet.call.session.handle({type: 'relay', from: %s, payload: %s}), true)`

// TestForgedPresenceIsIgnored: whoever controls the relay path between
// Ann and Bob cannot make Ann look muted on Bob's page: a presence for Ann
// signed by another key, Ann's own presence with a field changed, Ann's
// older presence replayed, and Ann's presence relayed as from someone
// else are all dropped and counted, and Bob's tile of Ann does not
// change; Ann's own next mute still shows.
func TestForgedPresenceIsIgnored(t *testing.T) {
	c, m := startMeeting(t)
	pages := openPages(t, "ann", joinURL(c, m, "Ann", "DE"), "bob", joinURL(c, m, "Bob", "DE"))
	ann, bob := pages[0], pages[1]
	waitTogether(t, ann, bob)
	pid := pidOf(bob, "Ann")
	bob.waitJS(30*time.Second, "Ann's first presence", fmt.Sprintf(`window.oakmeet.call.presence.get(%s)?.mic === true`, jsString(pid)), `JSON.stringify([...window.oakmeet.call.presence])`)

	// Ann's page keeps a copy of every presence it sends, as a server
	// on the path would.
	evalJS[bool](ann, `((s) => {
		window.__sent = [];
		const send = s.sendRelay.bind(s);
		s.sendRelay = (to, payload) => { if (payload?.type === 'presence') window.__sent.push(payload); return send(to, payload); };
		return true;
	})(window.oakmeet.call.session)`)
	evalJS[bool](ann, `(document.querySelector('[data-testid=mic]').click(), true)`)
	waitTile(bob, pid, "Ann's tile muted", `t.dataset.mic === 'off'`)
	evalJS[bool](ann, `(document.querySelector('[data-testid=mic]').click(), true)`)
	waitTile(bob, pid, "Ann's tile unmuted", `t.dataset.mic === undefined`)
	ann.waitJS(30*time.Second, "Ann's mute and unmute sent", `window.__sent.length === 2 && window.__sent[0].mic === false && window.__sent[1].mic === true`, `JSON.stringify(window.__sent)`)
	muteMsg := evalJS[string](ann, `JSON.stringify(window.__sent[0])`)
	unmuteMsg := evalJS[string](ann, `JSON.stringify(window.__sent[1])`)

	drops := func() string { return evalJS[string](bob, `JSON.stringify(window.oakmeet.call.ownPresence.drops)`) }
	base := drops()
	for _, tc := range []struct {
		what, from, payload, code string
	}{
		{"a presence for Ann signed by another key", jsString(pid), `(await (async () => {
			const keymsg = await import('/js/e2ee/keymsg.js');
			const { Identity } = await import('/js/e2ee/identity.js');
			const p = await keymsg.newPresence(window.oakmeet.call.meeting, ` + jsString(pid) + `, 1000, {mic: false, camera: true}, await Identity.generate());
			return keymsg.encode(p);
		})())`, "bad_signature"},
		{"Ann's unmute turned into a mute", jsString(pid), `{...` + unmuteMsg + `, mic: false}`, "bad_signature"},
		{"Ann's unmute with a higher seq", jsString(pid), `{...` + unmuteMsg + `, mic: false, seq: 99}`, "bad_signature"},
		{"Ann's older mute replayed", jsString(pid), muteMsg, "replay"},
		{"Ann's mute relayed as from someone else", `'ghost'`, muteMsg, "sender_mismatch"},
	} {
		before := evalJS[float64](bob, fmt.Sprintf(`window.oakmeet.call.ownPresence.drops[%s] ?? 0`, jsString(tc.code)))
		js := fmt.Sprintf(injectJS, tc.from, tc.payload)
		evalJS[bool](bob, `(async () => `+js+`)()`)
		bob.waitJS(30*time.Second, tc.what+" dropped as "+tc.code, fmt.Sprintf(`(window.oakmeet.call.ownPresence.drops[%s] ?? 0) === %v`, jsString(tc.code), before+1), `JSON.stringify(window.oakmeet.call.ownPresence.drops)`)
		if got := tileAttrs(bob, pid); got != `{}` {
			t.Errorf("%s: Bob's tile of Ann shows %s", tc.what, got)
		}
		if p := evalJS[string](bob, fmt.Sprintf(`JSON.stringify(window.oakmeet.call.presence.get(%s))`, jsString(pid))); p != evalJS[string](ann, `JSON.stringify((({type, meeting, participant, sig, v, ...rest}) => ({mic: rest.mic, camera: rest.camera, hand: rest.hand, screen: rest.screen, seq: rest.seq}))(window.__sent[1]))`) {
			t.Errorf("%s: Bob holds Ann's presence as %s", tc.what, p)
		}
	}
	t.Logf("drops before %s, after %s", base, drops())

	// The path still carries Ann's real presence.
	evalJS[bool](ann, `(document.querySelector('[data-testid=mic]').click(), true)`)
	waitTile(bob, pid, "Ann's real mute after the forgeries", `t.dataset.mic === 'off'`)
	ann.checkConsole()
	bob.checkConsole()
}

// TestPresenceFollowsAMove: Ann, muted with her hand up, moves (a new
// participant id on another node); Bob's tile of her new id shows the
// mute and the hand again, from presence numbered afresh for that id.
func TestPresenceFollowsAMove(t *testing.T) {
	c, m := startMeeting(t)
	pages := openPages(t, "ann", joinURL(c, m, "Ann", "DE"), "bob", joinURL(c, m, "Bob", "DE"))
	ann, bob := pages[0], pages[1]
	waitTogether(t, ann, bob)
	before := pidOf(bob, "Ann")
	evalJS[bool](ann, `(document.querySelector('[data-testid=mic]').click(), document.querySelector('[data-testid=raise-hand]').click(), true)`)
	waitTile(bob, before, "Ann's tile muted with her hand up", `t.dataset.mic === 'off' && t.dataset.hand === 'up'`)
	seqBefore := evalJS[int](bob, fmt.Sprintf(`window.oakmeet.call.presence.get(%s).seq`, jsString(before)))

	// Ann's page notes the seq of the first presence it signs under each
	// participant id.
	evalJS[bool](ann, `((p) => {
		window.__firstSeq = {};
		const sendTo = p.sendTo.bind(p);
		p.sendTo = (s, to) => {
			if (!(s.id in window.__firstSeq)) window.__firstSeq[s.id] = (p.sentSeq.get(s.id) ?? 0) + 1;
			return sendTo(s, to);
		};
		return true;
	})(window.oakmeet.call.ownPresence)`)
	evalJS[bool](ann, `(window.oakmeet.call.session.handle({v: 1, type: 'move', reason: 'policy_change'}), true)`)
	ann.waitJS(60*time.Second, "Ann moved to another node",
		`window.oakmeet.call.state === 'connected' && window.oakmeet.call.self.id !== `+jsString(before),
		`window.oakmeet.call.state + ' ' + window.oakmeet.call.self.id`)
	after := evalJS[string](ann, `window.oakmeet.call.self.id`)
	bob.waitJS(60*time.Second, "Ann's old tile gone", fmt.Sprintf(`!%s`, fmt.Sprintf(tileJS, jsString(before))), `document.querySelector('[data-testid=grid]').outerHTML.slice(0, 400)`)
	waitTile(bob, after, "Ann's new tile muted with her hand up", `t.dataset.mic === 'off' && t.dataset.hand === 'up' && !t.querySelector('.tile-muted').hidden`)
	if first := evalJS[int](ann, fmt.Sprintf(`window.__firstSeq[%s] ?? 0`, jsString(after))); first != 1 {
		t.Errorf("the first presence under the new id has seq %d, want 1 (the old id had reached %d)", first, seqBefore)
	}
	if p := evalJS[string](bob, fmt.Sprintf(`JSON.stringify(window.oakmeet.call.presence.get(%s))`, jsString(after))); !strings.Contains(p, `"mic":false`) {
		t.Errorf("Bob holds %s for Ann's new id", p)
	}
	ann.checkConsole()
	bob.checkConsole()
}

// TestReplayedAnnouncementsAreAnsweredOnce: a server that replays Ann's
// announcement to Bob fifty times gets Bob's presence back to Ann at most
// once in the answer interval, not one signed message per copy.
func TestReplayedAnnouncementsAreAnsweredOnce(t *testing.T) {
	c, m := startMeeting(t)
	pages := openPages(t, "ann", joinURL(c, m, "Ann", "DE"), "bob", joinURL(c, m, "Bob", "DE"))
	ann, bob := pages[0], pages[1]
	waitTogether(t, ann, bob)
	pid := pidOf(bob, "Ann")
	announcement := evalJS[string](ann, `JSON.stringify(window.oakmeet.call.session.member.announcement)`)
	evalJS[bool](bob, `((call) => {
		window.__toAnn = 0;
		window.__answers = 0;
		const s = call.session;
		const send = s.sendRelay.bind(s);
		s.sendRelay = (to, payload) => { if (payload?.type === 'presence' && to === `+jsString(pid)+`) window.__toAnn++; return send(to, payload); };
		const answer = call.ownPresence.answer.bind(call.ownPresence);
		call.ownPresence.answer = (s, from) => { window.__answers++; return answer(s, from); };
		return true;
	})(window.oakmeet.call)`)
	for range 50 {
		evalJS[bool](bob, fmt.Sprintf(injectJS, jsString(pid), announcement))
	}
	bob.waitJS(60*time.Second, "the fifty announcements taken and any answer sent", `window.__answers === 50 && window.oakmeet.call.ownPresence.busy === null`, `JSON.stringify({answers: window.__answers, toAnn: window.__toAnn})`)
	if n := evalJS[float64](bob, `window.__toAnn`); n > 1 {
		t.Fatalf("Bob sent Ann %v presence messages for 50 copies of her announcement", n)
	}
	ann.checkConsole()
	bob.checkConsole()
}
