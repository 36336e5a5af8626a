package web_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/web"
)

// nodesessionPage loads the app's nodesession.js; the test opens
// NodeSessions from it to a scripted node.
const nodesessionPage = `<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module">
import { NodeSession } from '/js/nodesession.js';
import { b64, fromB64 } from '/js/e2ee/bytes.js';
window.NodeSession = NodeSession;
window.b64 = b64;
window.fromB64 = fromB64;
window.ready = true;
</script>`

const (
	scriptedMeeting     = "m-path"
	scriptedParticipant = "p-path"
	nodeSTUN            = "stun:stun.node.invalid:3478"
	nodeTURN            = "turn:turn.node.invalid:3478?transport=udp"
)

// scriptedNode is a media node's signaling made to misbehave as a
// control plane or a relay between page and node could: it speaks the
// protocol over a real WebSocket and signs with a real identity key, but
// what it signs and what it sends are the test's. welcome builds the
// welcome from the join's nonce; after it come the candidates.
type scriptedNode struct {
	key        ed25519.PrivateKey
	welcome    func(nonce []byte) map[string]any
	candidates func(nonce []byte) []map[string]any
}

func (n *scriptedNode) sign(nonce []byte, kind, text string) string {
	return base64.StdEncoding.EncodeToString(nodecert.SignSDP(n.key, scriptedMeeting, scriptedParticipant, nonce, kind, text))
}

func (n *scriptedNode) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	_, data, err := ws.Read(ctx)
	if err != nil {
		return
	}
	var join struct {
		Type  string `json:"type"`
		Nonce []byte `json:"nonce"`
	}
	if json.Unmarshal(data, &join) != nil || join.Type != "join" || len(join.Nonce) != 32 {
		return
	}
	msgs := append([]map[string]any{n.welcome(join.Nonce)}, n.candidates(join.Nonce)...)
	for _, m := range msgs {
		m["v"] = 1
		b, _ := json.Marshal(m)
		if ws.Write(ctx, websocket.MessageText, b) != nil {
			return
		}
	}
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			return
		}
	}
}

func scriptedServer(t *testing.T, node *scriptedNode) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(nil))
	mux.HandleFunc("/nodesession-test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(nodesessionPage))
	})
	mux.HandleFunc("/node", node.serve)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// openSessionJS opens a NodeSession to the scripted node with a join
// answer carrying answerICE, and resolves to "connected" or the refusal's
// code.
func openSessionJS(srv *httptest.Server, identity ed25519.PublicKey, answerICE string) string {
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/node"
	return `(async () => {
		window.session = new NodeSession({
			answer: { participant_id: ` + jsString(scriptedParticipant) + `, token: 't', node: { id: 'n-1', url: ` + jsString(wsURL) + ` }, ice_servers: ` + answerICE + ` },
			local: {}, e2ee: null, meeting: ` + jsString(scriptedMeeting) + `,
			cert: { identityKey: fromB64(` + jsString(base64.StdEncoding.EncodeToString(identity)) + `) },
		});
		try { await session.connect(); return 'connected'; } catch (e) { return 'refused ' + (e.code ?? e.message); }
	})()`
}

func cand(c string) map[string]any {
	return map[string]any{"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0}
}

// TestPageUsesOnlyTheNodesSignedMediaPath: the page uses an ICE server,
// from the join answer or the welcome, only if the node vouched for every
// one of its URLs in its signed welcome, so a TURN server a control plane
// adds is never used; and it adds a trickled candidate only if the node's
// signature over it (kind "candidate:"+target) verifies, so a candidate a
// relay injects, one altered, or one signed for the other connection is
// dropped.
func TestPageUsesOnlyTheNodesSignedMediaPath(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	good := "candidate:1 1 udp 2130706431 192.0.2.10 50000 typ host"
	injected := "candidate:9 1 udp 2130706431 203.0.113.66 40000 typ host"
	node := &scriptedNode{key: key}
	node.welcome = func(nonce []byte) map[string]any {
		urls := []string{nodeSTUN, nodeTURN}
		return map[string]any{"type": "welcome", "id": scriptedParticipant, "meeting": scriptedMeeting, "ice_urls": urls,
			"ice_servers": []map[string]any{
				{"urls": []string{nodeTURN}, "username": "u", "credential": "c"},
				{"urls": []string{"turn:evil.invalid:3478"}, "username": "u", "credential": "c"},
			},
			"sig": node.sign(nonce, "welcome", strings.Join(urls, "\n"))}
	}
	node.candidates = func(nonce []byte) []map[string]any {
		return []map[string]any{
			{"type": "candidate", "target": "subscribe", "candidate": cand(good), "sig": node.sign(nonce, "candidate:subscribe", good)},
			{"type": "candidate", "target": "subscribe", "candidate": cand(injected)},
			{"type": "candidate", "target": "subscribe", "candidate": cand(injected), "sig": node.sign(nonce, "candidate:subscribe", good)},
			{"type": "candidate", "target": "subscribe", "candidate": cand(injected), "sig": node.sign(nonce, "candidate:publish", injected)},
			{"type": "candidate", "target": "publish", "candidate": cand(good), "sig": node.sign(nonce, "candidate:publish", good)},
			{"type": "candidate", "target": "publish", "candidate": cand(""), "sig": node.sign(nonce, "candidate:publish", "")},
		}
	}
	srv := scriptedServer(t, node)
	b := newBrowser(t, "mediapath", browserOpts{})
	b.navigate(srv.URL + "/nodesession-test")
	b.waitJS(10*time.Second, "nodesession.js to load", `window.ready === true`, `document.body.textContent`)

	answerICE := `[{ urls: [` + jsString(nodeSTUN) + `] }, { urls: ['turn:control-plane.invalid:3478'], username: 'u', credential: 'c' },
		{ urls: [` + jsString(nodeSTUN) + `, 'turn:half.invalid:3478'], username: 'u', credential: 'c' }]`
	if got := evalJS[string](b, openSessionJS(srv, key.Public().(ed25519.PublicKey), answerICE)); got != "connected" {
		t.Fatalf("the session to an honest welcome: %s", got)
	}
	used := evalJS[string](b, `JSON.stringify(session.sub.getConfiguration().iceServers.map((s) => [].concat(s.urls).join(' ')))`)
	if want := `["` + nodeSTUN + `","` + nodeTURN + `"]`; used != want {
		t.Errorf("ICE servers in use %s, want only the vouched ones %s", used, want)
	}
	b.waitJS(10*time.Second, "the candidates checked", `session.droppedCandidates === 3 && session.pending.subscribe.length + session.pending.publish.length === 2`,
		`JSON.stringify({ dropped: session.droppedCandidates, pending: session.pending })`)
	if got := evalJS[string](b, `JSON.stringify([session.pending.subscribe.map((c) => c.candidate), session.pending.publish.map((c) => c.candidate)])`); got != `[["`+good+`"],["`+good+`"]]` {
		t.Errorf("candidates kept %s, want only the signed ones", got)
	}
	b.checkConsole()
}

// TestPageRefusesAnUnsignedWelcome: a welcome whose signature does not
// cover its ice_urls (a TURN URL added after signing), or that has none,
// refuses the node (node_proof_invalid) before any media connection.
func TestPageRefusesAnUnsignedWelcome(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	for _, c := range []struct {
		name string
		sig  func(n *scriptedNode, nonce []byte) string
	}{
		{"URL added after signing", func(n *scriptedNode, nonce []byte) string { return n.sign(nonce, "welcome", nodeSTUN) }},
		{"signed as another kind", func(n *scriptedNode, nonce []byte) string {
			return n.sign(nonce, "offer", nodeSTUN+"\n"+"turn:evil.invalid:3478")
		}},
		{"no signature", func(*scriptedNode, []byte) string { return "" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			node := &scriptedNode{key: key}
			node.welcome = func(nonce []byte) map[string]any {
				return map[string]any{"type": "welcome", "id": scriptedParticipant, "meeting": scriptedMeeting,
					"ice_urls":    []string{nodeSTUN, "turn:evil.invalid:3478"},
					"ice_servers": []map[string]any{{"urls": []string{"turn:evil.invalid:3478"}, "username": "u", "credential": "c"}},
					"sig":         c.sig(node, nonce)}
			}
			node.candidates = func([]byte) []map[string]any { return nil }
			srv := scriptedServer(t, node)
			b := newBrowser(t, "welcome", browserOpts{})
			b.navigate(srv.URL + "/nodesession-test")
			b.waitJS(10*time.Second, "nodesession.js to load", `window.ready === true`, `document.body.textContent`)
			if got := evalJS[string](b, openSessionJS(srv, key.Public().(ed25519.PublicKey), `[]`)); got != "refused node_proof_invalid" {
				t.Errorf("a welcome %s: %s, want refused node_proof_invalid", c.name, got)
			}
			if evalJS[bool](b, `!!session.sub || !!session.pub`) {
				t.Errorf("a media connection was made after a welcome %s", c.name)
			}
			b.checkConsole()
		})
	}
}

// forgeMediaPath is a page script that sits where a control plane and a
// relay of the signaling would: it adds its own TURN server to every join
// answer and, after each answer from the node, injects two candidates for
// an address of its choosing (one unsigned, one carrying the answer's
// signature).
const forgeMediaPath = `(() => {
	window.__forged = 0;
	const native = window.fetch;
	window.fetch = async (...args) => {
		const resp = await native(...args);
		if (!String(args[0]).endsWith('/join') || !resp.ok) return resp;
		const body = await resp.json();
		if (body.node) body.ice_servers = [...(body.ice_servers ?? []), { urls: ['turn:forged.invalid:3478'], username: 'u', credential: 'c' }];
		return new Response(JSON.stringify(body), { status: resp.status, headers: resp.headers });
	};
	const Native = window.WebSocket;
	window.WebSocket = class extends Native {
		set onmessage(fn) {
			super.onmessage = (ev) => {
				fn.call(this, ev);
				let m;
				try { m = JSON.parse(ev.data); } catch { return; }
				if (m.type !== 'answer') return;
				const c = { candidate: 'candidate:9 1 udp 2130706431 203.0.113.66 40000 typ host', sdpMid: '0', sdpMLineIndex: 0 };
				for (const sig of [undefined, m.sig]) {
					window.__forged++;
					fn.call(this, new MessageEvent('message', { data: JSON.stringify({ v: 1, type: 'candidate', target: 'publish', candidate: c, sig }) }));
				}
			};
		}
		get onmessage() { return super.onmessage; }
	};
})();`

// TestPageIgnoresAForgedMediaPath: end to end with a real node (which
// signs its welcome's ice_urls and its candidates): a TURN server added to
// the join answer is not in either PeerConnection's configuration, and
// candidates injected into the signaling are dropped, never reaching
// ICE, while the page connects and sends through the node's own path.
func TestPageIgnoresAForgedMediaPath(t *testing.T) {
	c, m := startMeeting(t)
	b := newBrowser(t, "forged", browserOpts{})
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: forgeMediaPath}); err != nil {
		t.Fatal(err)
	}
	b.navigate(joinURL(c, m, "Alice", "DE"))
	b.waitJS(30*time.Second, "connected and sending",
		`(async () => window.oakmeet?.call?.state === 'connected' && (await (`+sentJS+`)(window.oakmeet.call.session)) > 2000)()`, `document.body.innerText`)
	if got := evalJS[string](b, `JSON.stringify([window.oakmeet.call.session.pub, window.oakmeet.call.session.sub].map((pc) => pc.getConfiguration().iceServers))`); strings.Contains(got, "forged.invalid") || !strings.Contains(got, "turn:127.0.0.1:") {
		t.Errorf("ICE servers in use %s: want the node's own TURN server and not the one added to the join answer", got)
	}
	b.waitJS(10*time.Second, "the forged candidates dropped",
		`window.__forged >= 2 && window.oakmeet.call.session.droppedCandidates >= window.__forged`,
		`window.__forged + ' forged, ' + window.oakmeet.call.session.droppedCandidates + ' dropped'`)
	if got := evalJS[string](b, `(async () => { const out = []; for (const pc of [window.oakmeet.call.session.pub, window.oakmeet.call.session.sub]) (await pc.getStats()).forEach((r) => r.type === 'remote-candidate' && out.push(r.address ?? r.ip)); return out.join(' '); })()`); strings.Contains(got, "203.0.113.66") {
		t.Errorf("an injected candidate reached ICE: remote candidates %s", got)
	}
	b.checkConsole()
}
